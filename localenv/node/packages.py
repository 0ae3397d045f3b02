"""The Debian packages of the real node and the image builds, installed with apt-get when missing."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

PACKAGES_FILE = Path(__file__).with_name("packages.txt")


class PackageError(RuntimeError):
    pass


def wanted() -> list[str]:
    lines = (ln.split("#", 1)[0].strip() for ln in PACKAGES_FILE.read_text().splitlines())
    return [ln for ln in lines if ln]


def missing(names: list[str] | None = None) -> list[str]:
    names = names if names is not None else wanted()
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *names],
                          capture_output=True, text=True, check=False)
    installed = {ln.split()[0] for ln in proc.stdout.splitlines() if ln.endswith(" installed")}
    return [n for n in names if n not in installed]


def install(log: Callable[[str], None] = print) -> list[str]:
    """apt-get install what is missing; returns the packages installed."""
    todo = missing()
    if not todo:
        return []
    if os.geteuid() != 0:
        raise PackageError(f"missing Debian packages {' '.join(todo)}; install them as root "
                           f"(apt-get install {' '.join(todo)})")
    t0 = time.monotonic()
    log(f"installing Debian packages: {' '.join(todo)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *todo]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=1800)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PackageError(f"{' '.join(cmd[:2])} failed: {last[0][:240]}")
    log(f"Debian packages installed in {time.monotonic() - t0:.0f} s")
    return todo
