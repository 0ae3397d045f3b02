"""A tiny training run: ``wandb.init`` (entity, project and run id from the WANDB_* variables the
launch agent sets), log a few steps, print one line, finish with an exit code.

``train.py [--steps N] [--exit-code C] [--sleep S]``; other arguments are ignored, as a real
script would ignore arguments it does not know.
"""

from __future__ import annotations

import argparse
import sys
import time

import wandb


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--sleep", type=float, default=0.0)
    args, _unknown = parser.parse_known_args(argv)
    run = wandb.init()
    for step in range(args.steps):
        run.log({"loss": 1.0 / (step + 1), "step": step})
        time.sleep(args.sleep)
    print(f"trainer: run {run.entity}/{run.project}/{run.id} logged {args.steps} steps, "
          f"exiting {args.exit_code}", flush=True)
    run.finish(exit_code=args.exit_code)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
