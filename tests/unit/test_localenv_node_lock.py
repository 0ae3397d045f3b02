"""The machine lock of the real node: one holder, a clear refusal, held by the node's processes
after the command that started it has gone, and nothing left once released."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from localenv.node import lock


def test_one_holder_and_a_one_line_refusal(tmp_path: Path) -> None:
    path = tmp_path / "run" / "real-node.lock"
    first = lock.try_acquire(Path("/state/a"), path)
    assert first is not None
    assert lock.try_acquire(Path("/state/b"), path) is None
    with pytest.raises(lock.NodeBusy) as refused:
        lock.acquire(Path("/state/b"), wait=0, path=path)
    message = str(refused.value)
    assert "\n" not in message and "/state/a" in message and "--no-real-node" in message
    first.release()
    assert not path.exists() and not path.parent.exists()
    second = lock.try_acquire(Path("/state/b"), path)
    assert second is not None and second.previous.state_dir == ""
    second.release()


def test_the_lock_lives_in_the_processes_it_is_passed_to(tmp_path: Path) -> None:
    path = tmp_path / "real-node.lock"
    held = lock.try_acquire(Path("/state/a"), path)
    assert held is not None
    child = subprocess.Popen(["sleep", "30"], pass_fds=(held.fd,))
    try:
        import os

        os.close(held.fd)  # the starting command exits; the node's process keeps the lock
        held.fd = -1
        assert lock.try_acquire(Path("/state/b"), path) is None
        assert "/state/a" in lock.read_holder(path).describe()
    finally:
        child.kill()
        child.wait()
    taken = lock.try_acquire(Path("/state/b"), path)
    assert taken is not None and taken.previous.state_dir == "/state/a"  # so it can clean up after a
    taken.release()


def test_waiting_reports_and_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "real-node.lock"
    held = lock.try_acquire(Path("/state/a"), path)
    assert held is not None
    lines: list[str] = []
    monkeypatch.setattr(lock, "WAIT_REPORT_SECONDS", 0.5)
    with pytest.raises(lock.NodeBusy, match="still in use"):
        lock.acquire(Path("/state/b"), wait=2, log=lines.append, path=path)
    assert lines[0].startswith("waiting for the real node") and any("still waiting" in ln for ln in lines)
    held.release()
