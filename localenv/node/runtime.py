"""The real node's containerd, driven with ``ctr``, and the sweep that finds what is left of
its containers: processes in its cgroups and shims named by its socket."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from localenv import cluster
from localenv.images.oci import Archive
from localenv.node import host
from localenv.node.config import Paths

NAMESPACE = "k8s.io"  # the CRI plugin's containerd namespace


class CtrError(cluster.LocalenvError):
    pass


def ctr(paths: Paths, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ctr", "--address", str(paths.containerd_socket), "--namespace", NAMESPACE, *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise CtrError(f"ctr {' '.join(args)}: {(proc.stderr or proc.stdout).strip()[:400]}")
    return proc


def image_refs(paths: Paths) -> set[str]:
    proc = ctr(paths, "images", "list", "--quiet", check=False)
    return set(proc.stdout.split()) if proc.returncode == 0 else set()


def import_archive(paths: Paths, archive: Archive) -> bool:
    """Import *archive* unless containerd has it already; True when it was imported."""
    if archive.ref in image_refs(paths):
        return False
    ctr(paths, "images", "import", "--no-unpack=false", str(archive.path))
    if archive.ref not in image_refs(paths):
        raise CtrError(f"ctr images import {archive.path}: {archive.ref} is not listed afterwards")
    return True


def remove_containers(paths: Paths) -> None:
    """Kill and delete every task and container containerd still has (best effort)."""
    tasks = ctr(paths, "tasks", "list", "--quiet", check=False, timeout=30)
    for task in tasks.stdout.split() if tasks.returncode == 0 else []:
        ctr(paths, "tasks", "kill", "--signal", "SIGKILL", task, check=False, timeout=30)
    deadline = time.monotonic() + 10
    for task in tasks.stdout.split() if tasks.returncode == 0 else []:
        while time.monotonic() < deadline:
            if ctr(paths, "tasks", "delete", task, check=False, timeout=30).returncode == 0:
                break
            time.sleep(0.3)
    containers = ctr(paths, "containers", "list", "--quiet", check=False, timeout=30)
    for container in containers.stdout.split() if containers.returncode == 0 else []:
        ctr(paths, "containers", "delete", container, check=False, timeout=30)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def shim_pids(paths: Paths) -> list[int]:
    """containerd-shim processes serving our containerd (reparented to PID 1 once it stops)."""
    sock = str(paths.containerd_socket)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = _cmdline(int(entry.name))
            if "containerd-shim" in cmd and sock in cmd:
                found.append(int(entry.name))
    return found


def cgroup_pids() -> set[int]:
    """Every process in our cgroup trees: only pods of the real node live there."""
    pids: set[int] = set()
    for top in host.cgroup_dirs():
        if not top.exists():
            continue
        for dirpath, _, files in os.walk(top):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(x) for x in (Path(dirpath) / "cgroup.procs").read_text().split())
    pids.discard(os.getpid())
    return pids


def kill_leftovers(paths: Paths, timeout: float = 10.0) -> list[int]:
    """SIGKILL the processes of our pods and our shims; returns those still alive after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        pids = cgroup_pids() | set(shim_pids(paths))
        if not pids or time.monotonic() > deadline:
            return sorted(pids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
