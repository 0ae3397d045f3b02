"""The Python base image that builds start ``FROM``: Debian bookworm (minbase) with its Python 3.11,
venv and pip, made with ``mmdebstrap`` (from Debian; installed with apt-get when missing) and
cached by the hash of its recipe. ``push_python`` puts it in a registry as ``library/python:3.11``
and ``library/python:3.11-slim``, the names generated Dockerfiles use, so Kaniko's
``--registry-mirror`` (and buildah's registries.conf) find it there.
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
from localenv.buildservers import install, oci

SUITE = "bookworm"
PYTHON = "3.11"  # bookworm's python3
PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
TAGS = (PYTHON, f"{PYTHON}-slim")


def _log(line: str) -> None:
    print(f"[localenv images] {line}", file=sys.stderr, flush=True)


def _ensure_mmdebstrap(log: Callable[[str], None]) -> str:
    found = shutil.which("mmdebstrap")
    if found:
        return found
    log("installing mmdebstrap with apt-get")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "mmdebstrap"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise install.InstallError(f"`{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout).strip()[-240:]}")
    found = shutil.which("mmdebstrap")
    if not found:
        raise install.InstallError("mmdebstrap is not on PATH after installing it")
    return found


def recipe() -> str:
    return f"{SUITE};minbase;{','.join(PACKAGES)};{','.join(EXCLUDES)}"


def python_rootfs(log: Callable[[str], None] = _log) -> Path:
    """The base image's root filesystem as a tar (built once per recipe)."""
    key = hashlib.sha256(recipe().encode()).hexdigest()[:16]
    root = tools.cache_root() / "baseimages" / key
    out = root / "rootfs.tar"
    if out.is_file():
        return out
    root.mkdir(parents=True, exist_ok=True)
    with tools._locked(root / ".lock"):
        if out.is_file():
            return out
        mmdebstrap = _ensure_mmdebstrap(log)
        partial = root / "rootfs.tar.partial"
        cmd = [mmdebstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}", "--format=tar",
               *(f"--dpkgopt=path-exclude={e}" for e in EXCLUDES),
               "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*", SUITE, str(partial)]
        log(f"building the python {PYTHON} base image with mmdebstrap (log: {root / 'build.log'})")
        t0 = time.monotonic()
        with (root / "build.log").open("w") as handle:
            proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            next_beat = t0 + 30
            while proc.poll() is None:
                time.sleep(0.5)
                if time.monotonic() > next_beat:
                    log(f"  base image: still building ({time.monotonic() - t0:.0f} s)")
                    next_beat += 30
        if proc.returncode != 0:
            tail = (root / "build.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise install.InstallError(f"mmdebstrap failed: {tail[0][:240] if tail else 'no output'} "
                                       f"(log: {root / 'build.log'})")
        partial.rename(out)
        log(f"base image built in {time.monotonic() - t0:.0f} s ({out.stat().st_size // 2**20} MiB)")
    return out


def push_python(registry_url: str, log: Callable[[str], None] = _log) -> list[str]:
    """Push the base image as library/python:<tags>; returns the pushed references."""
    layer = oci.compress(python_rootfs(log))
    refs = []
    for tag in TAGS:
        oci.push(registry_url, "library/python", tag, layer, cmd=["python3"])
        refs.append(f"{registry_url.removeprefix('http://')}/library/python:{tag}")
    return refs
