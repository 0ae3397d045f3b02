"""`make bench`: our agent against the official one (wandb 0.31.0) and against the floor, on this
machine, in the same run, each on a fresh local control plane and W&B emulator.

Usage: ``python -m benchmarks [--preset default|full|quick] [--out DIR] [--update-readme] [SCENARIO ...]``
(scenarios: all when none given). Prints the markdown table, writes the JSON and the plots under
benchmarks/results/ (or --out), and exits 1 when a run failed or a scenario could not run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import burst, chart, config, footprint, jobs_by_name, plots, readme, report, steady, trickle
from benchmarks.report import Scenario
from benchmarks.site import Sites

SCENARIOS: dict[str, Callable[[config.Sizes, Path, Sites], Scenario]] = {
    "burst": burst.run_burst,
    "trickle": trickle.run,
    "many_queues": burst.run_many_queues,
    "priority": burst.run_priority,
    "steady": steady.run,
    "jobs_by_name": jobs_by_name.run,
    "footprint": footprint.run,
    "chart": chart.run,
}
EXTRAS = ("emulator_throughput",)  # prints its own table; not an agent figure
TIMED_ALONE = ("chart", *EXTRAS)  # no control plane: a kept one is stopped first, not left idling beside them


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"scenarios (default: all of {', '.join(SCENARIOS)}); "
                                           f"also {', '.join(EXTRAS)}")
    p.add_argument("--preset", choices=sorted(config.PRESETS), default="default", help="scenario sizes")
    p.add_argument("--out", type=Path, default=report.RESULTS, help="where the JSON and plots go")
    p.add_argument("--update-readme", action="store_true", help="put the table and the burst plot in README.md")
    return p


def run_scenarios(names: list[str], sizes: config.Sizes, work: Path, sites: Sites, done: list[Scenario]) -> int:
    """Run each scenario in turn on `sites`, appending what it measured to `done`; the number of
    failed runs (a scenario that could not run counts as one)."""
    failed = 0
    for name in names:
        t0 = time.monotonic()
        print(f"\n=== {name} ===", flush=True)
        if name in TIMED_ALONE:
            sites.stop()
        if name in EXTRAS:
            __import__(f"benchmarks.{name}", fromlist=["main"]).main()
            continue
        try:
            sc = SCENARIOS[name](sizes, work / name, sites)
        except Exception as exc:  # one broken scenario must not hide the others' figures
            failed += 1
            traceback.print_exc()
            sc = Scenario(name, name, notes=[f"could not run: {type(exc).__name__}: {exc}"])
        done.append(sc)
        failed += sum(1 for r in sc.runs if not r["ok"])
        print(report.table({"scenarios": {sc.name: sc.doc()}}), flush=True)
        print(f"({name}: {time.monotonic() - t0:.0f} s, load average {report.load_average()})", flush=True)
    return failed


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    names = args.names or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS and n not in EXTRAS]
    if unknown:
        print(f"benchmarks: unknown scenario(s) {', '.join(unknown)}; available: "
              f"{', '.join([*SCENARIOS, *EXTRAS])}", file=sys.stderr)
        return 2
    sizes = config.sizes(args.preset)
    started = dt.datetime.now(dt.UTC)
    load_before = report.load_average()
    print(f"benchmarks ({args.preset}): load average {load_before} on {report.machine()['cores']} cores", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-work-"))
    done: list[Scenario] = []
    try:
        with Sites(fresh=sizes.fresh_localenv) as sites:
            failed = run_scenarios(names, sizes, work, sites, done)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = report.document(done, started, load_before, dataclasses.asdict(sizes) | {"preset": args.preset},
                          footprint.wandb_version())
    path = report.write(doc, args.out)
    drawn = plots.draw(done, args.out, path.stem)
    doc["plots"] = [p.name for p in drawn]
    path.write_text(report.json_text(doc))
    print(f"\n## Results {doc['date']} ({args.preset}; load average {load_before} -> {doc['load_average_after']})\n")
    print(report.table(doc))
    if report.notes(doc):
        print("\n" + report.notes(doc))
    print(f"\nwritten: {path}" + "".join(f", {p.name}" for p in drawn))
    if args.update_readme:
        readme.update(doc, drawn, results=path.name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
