"""Regenerate tests/fixtures/official-agent-operations.json.

Runs the test modules of tests/e2e/operations_fixture.py's SCENARIOS (the official agent
against the emulator: its lifecycle without and with the local control plane, and launching
image, code and git jobs) with RECORD_OFFICIAL_AGENT_OPERATIONS=1, which makes them rewrite the
fixture from the operations the agent actually sent once every scenario has run.

Usage: ``.venv/bin/python tests/e2e/record_official_agent_operations.py [pytest args]``
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from operations_fixture import SCENARIOS  # noqa: E402


def main(argv: list[str]) -> int:
    env = dict(os.environ, RECORD_OFFICIAL_AGENT_OPERATIONS="1")
    modules = sorted({f"tests/e2e/{module}" for module in SCENARIOS.values()})
    cmd = [sys.executable, "-m", "pytest", "-q", *modules, *argv]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
