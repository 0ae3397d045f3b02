"""Resident memory and CPU seconds of a process tree, sampled from /proc (the agent and every
process it starts: the official agent runs `docker --version` and its own wandb service)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    """A process's children; none once it has exited (between the sampler finding it and reading it)."""
    out = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and of its children that it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


class Sampler(threading.Thread):
    """Peak RSS and CPU seconds of every process in a tree, with a time series for plots.

    The CPU figure is the sum over the live processes of their own and their reaped children's
    time: when a process exits and is waited for, its time moves into its parent's, so short
    children that no sample saw (`docker --version`) are counted too.
    """

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_rss_mb = 0.0
        self.cpu_seconds = 0.0
        self.series: list[tuple[float, float, float]] = []  # (wall time, cpu seconds, rss MB)
        self.done = threading.Event()

    def sample(self) -> None:
        pids = tree(self.pid)
        rss = sum(rss_kb(p) for p in pids) / 1024
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        self.cpu_seconds = max(self.cpu_seconds, sum(cpu_seconds(p) for p in pids))
        self.series.append((time.time(), self.cpu_seconds, rss))

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)

    def stop(self) -> None:
        self.done.set()
        self.join(5)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds spent between two wall times (from the nearest samples)."""
        return self._at(end)[1] - self._at(start)[1]

    def peak_rss_between(self, start: float, end: float) -> float:
        inside = [s[2] for s in self.series if start <= s[0] <= end]
        return max(inside, default=self._at(end)[2])

    def _at(self, when: float) -> tuple[float, float, float]:
        before = [s for s in self.series if s[0] <= when]
        return before[-1] if before else (self.series[0] if self.series else (when, 0.0, 0.0))
