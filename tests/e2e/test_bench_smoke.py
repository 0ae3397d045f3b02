"""`make bench` keeps working: its burst scenario at the smoke-test size (a few runs, our agent and
the floor, a fresh local control plane and emulator), through the same entry point. Asserts the
structure of what it writes and that no run was lost; never a speed."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from benchmarks.__main__ import main

pytestmark = pytest.mark.e2e


def test_the_burst_benchmark_runs_end_to_end_and_loses_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("BENCH_")]:
        monkeypatch.delenv(var)
    assert main(["--preset", "quick", "--out", str(tmp_path), "burst"]) == 0
    (path,) = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["settings"]["preset"] == "quick" and doc["machine"]["cores"]
    burst = doc["scenarios"]["burst"]
    (run,) = burst["runs"]
    assert run["ok"] and not run["error"], run
    runs = doc["settings"]["burst_runs"]
    # Every run got exactly one workload and one ack (a lost or doubled run fails the run above).
    assert run["figures"]["api_breakdown"].get("create jobs") == runs
    assert run["figures"]["wandb_breakdown"].get("ackRunQueueItem") == 1.0
    for name in ("total @0ms", "drain @0ms", "p95 @0ms", "wandb_requests_per_run @0ms"):
        figure = burst["figures"][name]
        assert figure["ours"]["n"] == 1 and "failures" not in figure, (name, figure)
    assert burst["figures"]["total @0ms"]["floor"]["n"] == 1
    assert burst["figures"]["total @0ms"]["ratio_floor"] is not None
    if importlib.util.find_spec("matplotlib") is not None:  # the bench extra
        assert any(p.endswith("-burst.png") for p in doc["plots"])
