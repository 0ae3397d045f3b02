"""``python -m localenv.wandb_emulator --port N [--host H] [--state-file F] [--api-key K]
[--claim-timeout S] [--entity E]``: serve the emulator until interrupted.

On start it prints two lines, ``WANDB_BASE_URL=<url>`` and ``WANDB_API_KEY=<key>``, then a
blank line; other tools wait for that and read them.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from localenv.wandb_emulator import API_KEY_FORMAT, start_emulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localenv.wandb_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free port)")
    parser.add_argument("--state-file", type=Path, help="JSON file that keeps the state across restarts")
    parser.add_argument("--api-key", help="API key to accept (format local-<40+ word characters>)")
    parser.add_argument("--claim-timeout", type=float, default=60.0, help="seconds before an un-acked item returns")
    parser.add_argument("--entity", default="local", help="entity (and user name) of the API key (default local)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.api_key is not None and not API_KEY_FORMAT.match(args.api_key):
        print("--api-key: must look like local-<40 or more letters, digits or underscores>", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print("--port: must be between 0 and 65535", file=sys.stderr)
        return 2
    if args.claim_timeout <= 0:
        print("--claim-timeout: must be a positive number of seconds", file=sys.stderr)
        return 2
    try:
        server, key = start_emulator(
            host=args.host,
            port=args.port,
            state_file=args.state_file,
            api_key=args.api_key,
            claim_timeout=args.claim_timeout,
            username=args.entity,
            entity=args.entity,
        )
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{args.state_file}: {exc}", file=sys.stderr)
        return 2
    print(f"WANDB_BASE_URL={server.url}")
    print(f"WANDB_API_KEY={key}")
    print("", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
