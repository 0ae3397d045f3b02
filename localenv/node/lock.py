"""The machine-wide lock of the real node: one per machine, because its paths are fixed.

``flock`` on ``/run/launch-agent-localenv/real-node.lock``. The holder writes who it is into
the file (state dir, PID, time) so a refusal or a waiting line can say who has the node. The
open file is passed to every process of the node (containerd, kubelet, kube-proxy, ...), so
the lock lasts as long as the node does even after the command that started it has exited,
and it is released by the kernel when the last of them ends — a node that crashed never
blocks the machine. The file is removed by whoever releases it while still holding it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOCK_DIR = Path("/run/launch-agent-localenv")
LOCK_FILE = LOCK_DIR / "real-node.lock"
WAIT_REPORT_SECONDS = 30.0


class NodeBusy(RuntimeError):
    """The real node of this machine belongs to another localenv."""


@dataclass
class Holder:
    state_dir: str = ""
    pid: int = 0
    since: float = 0.0

    def describe(self) -> str:
        if not self.state_dir:
            return "another localenv"
        age = time.time() - self.since if self.since else 0.0
        return f"the localenv in {self.state_dir} (pid {self.pid}, for {age / 60:.0f} min)"


def read_holder(path: Path = LOCK_FILE) -> Holder:
    with contextlib.suppress(OSError, ValueError, TypeError):
        return Holder(**json.loads(path.read_text()))
    return Holder()


class MachineLock:
    """An acquired lock; ``fd`` is to be inherited by the node's processes."""

    def __init__(self, fd: int, path: Path, previous: Holder) -> None:
        self.fd = fd
        self.path = path
        self.previous = previous  # who held it before (a crashed node's state dir, for clean-up)

    def release(self) -> None:
        """Remove the file and close our descriptor (the node's processes must be gone)."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            if _same_file(self.fd, self.path):
                self.path.unlink()
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()
        os.close(self.fd)
        self.fd = -1


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def try_acquire(state_dir: Path, path: Path = LOCK_FILE) -> MachineLock | None:
    """Take the lock without waiting; None when someone holds it."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        if not _same_file(fd, path):  # released and removed while we opened it: take the new one
            os.close(fd)
            continue
        previous = read_holder(path)
        data = json.dumps({"state_dir": str(state_dir), "pid": os.getpid(), "since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return MachineLock(fd, path, previous)


def acquire(state_dir: Path, wait: float = 0.0, log: Callable[[str], None] = print,
            path: Path = LOCK_FILE, reclaim: Callable[[Holder], bool] | None = None) -> MachineLock:
    """Take the lock, waiting up to *wait* seconds (a progress line every 30 s). *reclaim* is
    asked about a busy lock first: it may clean up a node whose localenv is gone but whose
    container shims still hold the lock, and say so (True)."""
    lock = try_acquire(state_dir, path)
    if lock is None and reclaim is not None and reclaim(read_holder(path)):
        lock = try_acquire(state_dir, path)
    if lock is not None:
        return lock
    holder = read_holder(path)
    if wait <= 0:
        raise NodeBusy(
            f"the real node of this machine is in use by {holder.describe()}; one real node per machine "
            f"(fixed kubelet and containerd paths): stop that one (`python -m localenv down --state-dir "
            f"{holder.state_dir or 'DIR'}`), wait for it (`--wait-real-node SECONDS`), or start without "
            "a real node (`--no-real-node`)"
        )
    t0 = time.monotonic()
    log(f"waiting for the real node of this machine, in use by {holder.describe()}")
    next_report = t0 + WAIT_REPORT_SECONDS
    while True:
        time.sleep(1.0)
        lock = try_acquire(state_dir, path)
        if lock is None and reclaim is not None and reclaim(read_holder(path)):
            lock = try_acquire(state_dir, path)
        if lock is not None:
            log(f"got the real node after {time.monotonic() - t0:.0f} s of waiting")
            return lock
        now = time.monotonic()
        if now - t0 > wait:
            raise NodeBusy(f"the real node of this machine was still in use by {read_holder(path).describe()} "
                           f"after waiting {wait:.0f} s")
        if now >= next_report:
            log(f"still waiting for the real node ({now - t0:.0f} s), in use by {read_holder(path).describe()}")
            next_report += WAIT_REPORT_SECONDS
