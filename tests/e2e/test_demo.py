"""`make demo` end to end: the README's first command, on a local environment of its own (with the
machine's real node, waiting for it when another session has it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from localenv import demo

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_every_queued_run_to_its_end(tmp_path: Path) -> None:
    state_dir = tmp_path / "demo-state"
    proc = subprocess.run([sys.executable, "-m", "localenv.demo", "--state-dir", str(state_dir), "--teardown"],
                          cwd=REPO, capture_output=True, text=True, timeout=2400, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout.split("[6/6] done", 1)[1].split("\n", 1)[1]
    rows = {line.split()[1]: line.split() for line in table.splitlines()
            if line.split() and line.split()[0] in demo.QUEUES}
    assert set(rows) == {name for _, name, _, _ in demo.RUNS}
    for queue, name, _, outcome in demo.RUNS:
        row = rows[name]
        assert row[0] == queue
        # The item is done either way; the outcome is the run's state, reported by the run itself
        # on the real node (the trainer's wandb) and its workload's state.
        assert row[2] == "FINISHED", row
        assert row[3].startswith("PyTorchJob/" if queue == "demo-pytorch" else "Job/"), row
        assert row[4] == ("Failed" if outcome == "fail" else "Succeeded"), row
        assert row[5] == ("failed" if outcome == "fail" else "finished"), row
    logs = proc.stdout.split("the runs' own log lines", 1)[1]
    for queue, name, steps, outcome in demo.RUNS:
        if queue == demo.REAL_QUEUE:  # the run's container really ran
            exit_code = 1 if outcome == "fail" else 0
            assert re.search(rf"{name}: trainer: run local/demo/\w+ logged {steps} steps, exiting {exit_code}", logs)
    # One run was launched by job name: the official CLI made the job artifact and pushed it.
    assert f"$ wandb launch -j {demo.ENTITY}/{demo.PROJECT}/{demo.JOB}:latest" in proc.stdout
    assert "on localenv-real: Ready" in proc.stdout  # the agent ran as the chart's pod on the real node
    assert not state_dir.exists(), "--teardown leaves no state behind"
