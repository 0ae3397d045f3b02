"""Installs the non-Go servers image builds are tested against, pinned and cached by content hash.

- ``moto[server]`` (S3, STS, ECR) into its own virtualenv ``<cache>/moto/<hash>``, from
  ``moto-requirements.txt`` (the full pinned set), so the test virtualenv stays small;
- Azurite (Azure blob) with ``npm ci`` into ``<cache>/azurite/<hash>``, from ``azurite/package.json``
  and its lock file.

The hash covers the pin files and the interpreter/Node version; an unchanged pin installs
nothing. Installs are locked (several test sessions may start at once) and print progress.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from localenv import tools

HERE = Path(__file__).resolve().parent
MOTO_PINS = HERE / "moto-requirements.txt"
AZURITE_DIR = HERE / "azurite"
HEARTBEAT_SECONDS = 30.0


class InstallError(RuntimeError):
    """A server could not be installed; the message is one line meant for the user."""


def _log(line: str) -> None:
    print(f"[localenv servers] {line}", file=sys.stderr, flush=True)


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _run(cmd: list[str], cwd: Path, log_path: Path, what: str, log: Callable[[str], None]) -> None:
    start = time.monotonic()
    next_beat = start + HEARTBEAT_SECONDS
    with log_path.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                if time.monotonic() >= next_beat:
                    log(f"  {what}: still installing ({time.monotonic() - start:.0f} s)")
                    next_beat += HEARTBEAT_SECONDS
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        last = lines[-1].strip()[:240] if lines else "no output"
        raise InstallError(f"installing {what} failed: {last} (log: {log_path})")


def _install(name: str, key: str, marker: str, steps: Callable[[Path, Path], None],
             log: Callable[[str], None]) -> Path:
    root = tools.cache_root() / name / key
    done = root / marker
    if done.exists():
        return root
    with tools._locked(root.parent / f".{key}.lock"):
        if done.exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        log_path = root.parent / f"{key}.log"
        log_path.write_text("")
        log(f"installing {name} into {root} (log: {log_path})")
        t0 = time.monotonic()
        try:
            steps(root, log_path)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        done.write_text(f"{time.monotonic() - t0:.0f}\n")
        log(f"{name}: installed in {time.monotonic() - t0:.0f} s")
    return root


def moto_python(log: Callable[[str], None] = _log) -> Path:
    """The interpreter of the moto virtualenv (installed on first use)."""
    key = _digest(MOTO_PINS.read_bytes(), sys.version.encode())

    def steps(root: Path, log_path: Path) -> None:
        _run([sys.executable, "-m", "venv", str(root)], root, log_path, "moto (venv)", log)
        _run([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "--no-deps", "-r", str(MOTO_PINS)], root, log_path, "moto", log)

    return _install("moto", key, ".installed", steps, log) / "bin" / "python"


def _node_version() -> str:
    node = shutil.which("node")
    if not node:
        raise InstallError("node was not found on PATH; Azurite (the Azure blob server of the tests) needs "
                           "Node.js >= 20 and npm")
    return subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()


def azurite_main(log: Callable[[str], None] = _log) -> Path:
    """The Azurite blob server's entry script (installed on first use)."""
    version = _node_version()
    package, lock = (AZURITE_DIR / "package.json").read_bytes(), (AZURITE_DIR / "package-lock.json").read_bytes()
    key = _digest(package, lock, version.encode())

    def steps(root: Path, log_path: Path) -> None:
        npm = shutil.which("npm")
        if not npm:
            raise InstallError("npm was not found on PATH; it installs Azurite")
        shutil.copy(AZURITE_DIR / "package.json", root / "package.json")
        shutil.copy(AZURITE_DIR / "package-lock.json", root / "package-lock.json")
        _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], root, log_path,
             "azurite", log)

    root = _install("azurite", key, ".installed", steps, log)
    return root / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
