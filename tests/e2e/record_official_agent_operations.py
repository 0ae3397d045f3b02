"""Regenerate tests/fixtures/official-agent-operations.json.

Runs tests/e2e/test_official_agent.py (the official agent against the emulator, including
the lifecycle on the local control plane) with RECORD_OFFICIAL_AGENT_OPERATIONS=1, which
makes it rewrite the fixture from the operations the agent actually sent once both agent
scenarios have run.

Usage: ``.venv/bin/python tests/e2e/record_official_agent_operations.py [pytest args]``
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    env = dict(os.environ, RECORD_OFFICIAL_AGENT_OPERATIONS="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "tests/e2e/test_official_agent.py", *argv]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
