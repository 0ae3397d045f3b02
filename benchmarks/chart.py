"""Scenario 7, generator and chart: the cold start of `python -m generator values` (the official
project has no generator), and `helm template` render time of our chart and of the official
chart for the same values (a values file written for the official chart, which ours renders
unchanged). Median of a few runs each.

The official chart is not on this machine by default (no network to its chart repository):
point `BENCH_OFFICIAL_CHART` at a checkout of wandb/helm-charts' `charts/launch-agent`, or put one
at ~/.cache/launch-agent/bench/official-chart-0.13.12/charts/launch-agent; otherwise the table says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.agents import ROOT
from benchmarks.config import Sizes
from benchmarks.report import Scenario
from benchmarks.site import Sites

VALUES = ROOT / "tests" / "fixtures" / "official-style-values.yaml"
CACHED_OFFICIAL = Path.home() / ".cache" / "launch-agent" / "bench" / "official-chart-0.13.12" / "charts" / "launch-agent"


def official_chart() -> Path | None:
    given = os.environ.get("BENCH_OFFICIAL_CHART")
    for path in ([Path(given)] if given else []) + [CACHED_OFFICIAL]:
        if (path / "Chart.yaml").is_file():
            return path
    return None


def timed(argv: list[str], reps: int, env: dict[str, str] | None = None) -> list[float]:
    out = []
    for _ in range(reps):
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:4])} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        out.append(elapsed)
    return out


def run(sizes: Sizes, work: Path, sites: Sites) -> Scenario:
    from localenv import helm

    reps = 5 if sizes.reps_ours > 1 else 3
    sc = Scenario("chart", "generator and chart")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="bench-chart-") as tmp:
        values = Path(tmp) / "values.yaml"
        gen = [sys.executable, "-m", "generator", "values", "-c", str(ROOT / "examples" / "launch-config-noop.yaml"),
               "-q", str(ROOT / "examples" / "queue-job.yaml"), "-o", str(values)]
        fig = sc.figure("generator values, cold start", "s")
        for t in timed(gen, reps, env):
            fig.add("ours", t)
        binary = str(helm.binary())
        render = sc.figure("helm template, official-style values", "s")
        for t in timed([binary, "template", "bench", str(ROOT / "charts" / "launch-agent"), "-f", str(VALUES)], reps):
            render.add("ours", t)
        official = official_chart()
        if official is None:
            render.fail("official", "the official chart is not on this machine (set BENCH_OFFICIAL_CHART)")
        else:
            for t in timed([binary, "template", "bench", str(official), "-f", str(VALUES)], reps):
                render.add("official", t)
        generated = sc.figure("helm template, generated values", "s")
        for t in timed([binary, "template", "bench", str(ROOT / "charts" / "launch-agent"), "-f", str(values)], reps):
            generated.add("ours", t)
    sc.notes.append("the official project has no values generator; the official chart renders the same "
                    "official-style values file (tests/fixtures/official-style-values.yaml)")
    return sc
