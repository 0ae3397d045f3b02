"""`make demo` end to end: the README's first command, on a local environment of its own."""

from __future__ import annotations

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
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout.split("[6/6] done", 1)[1]
    rows = {line.split()[1]: line.split() for line in table.splitlines()
            if line.split() and line.split()[0] in demo.QUEUES}
    assert set(rows) == {name for _, name, _, _ in demo.RUNS}
    for queue, name, _, outcome in demo.RUNS:
        row = rows[name]
        assert row[0] == queue
        assert row[2] == ("FAILED" if outcome == "fail" else "FINISHED"), row
        assert row[3].startswith("PyTorchJob/" if queue == "demo-pytorch" else "Job/"), row
    assert not state_dir.exists(), "--teardown leaves no state behind"
