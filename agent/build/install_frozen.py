"""Installs a job's frozen requirements inside an image build, tolerating packages that fail.

Copied into generated build contexts and run by the image's own Python (standard library only):
``python _launch_agent_install.py requirements.frozen.txt``. It first installs the whole list;
if that fails, each requirement alone, and ends with one line naming those that failed —
``ERROR: Failed to install: a,b. During automated build process.``, the marker the agent (like
the official one) turns into a warning on the run-queue item. The build goes on without them.
"""

from __future__ import annotations

import subprocess
import sys

PREFIX = "ERROR: Failed to install: "
SUFFIX = ". During automated build process."


def requirements(path: str) -> list[str]:
    out = []
    with open(path) as handle:
        for raw in handle:
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            if line.startswith("wandb==") and "dev" in line:  # unreleased versions are not on an index
                line = "wandb"
            out.append(line)
    return out


def pip(*args: str) -> bool:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *args]
    return subprocess.run(cmd, check=False).returncode == 0


def main(argv: list[str]) -> int:
    reqs = requirements(argv[1])
    if not reqs or pip(*reqs):
        return 0
    failed = [req for req in reqs if not pip(req)]
    if failed:
        sys.stderr.write(PREFIX + ",".join(failed) + SUFFIX + "\n")
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
