"""A node whose localenv died without ``down`` is undone by the next one to take the machine's
lock, before that one looks at the machine — also when the dead node's state dir is gone, from
the machine's copy of its host record."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from localenv.node import host, lifecycle, lock


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[host.HostRecord]:
    """The lock file and the machine copy under *tmp_path*; restore() records what it is given."""
    lock_file = tmp_path / "run" / "real-node.lock"
    monkeypatch.setattr(host, "MACHINE_RECORD", tmp_path / "run" / "host-record.json")
    real_acquire = lock.acquire
    monkeypatch.setattr(lock, "acquire", lambda state_dir, **kw: real_acquire(state_dir, path=lock_file, **kw))
    restored: list[host.HostRecord] = []
    monkeypatch.setattr(host, "restore", lambda rec: restored.append(rec) or [])
    for name in ("unmount_all",):
        monkeypatch.setattr(host, name, lambda root: [])
    monkeypatch.setattr(lifecycle.runtime, "kill_leftovers", lambda paths: [])
    monkeypatch.setattr(lifecycle.runtime, "shim_pids", lambda paths: [])
    return restored


def _dead_node(state_dir: Path) -> None:
    """What a node leaves when all its processes were killed: its record, the lock file naming it."""
    paths = lifecycle.Paths.of(state_dir)
    paths.root.mkdir(parents=True)
    host.HostRecord(sysctls={"net.ipv4.ip_forward": "0"}, bridge_made=True).save(paths.host_record)
    dead = lock.acquire(state_dir, wait=0)
    dead.fd, fd = -1, dead.fd
    os.close(fd)  # the process holding it died; the file still names it


def test_taking_the_lock_undoes_a_dead_node(tmp_path: Path, machine: list[host.HostRecord]) -> None:
    _dead_node(tmp_path / "dead")
    taken = lifecycle.acquire_lock(tmp_path / "next", 0, print)
    try:
        assert [r.sysctls for r in machine] == [{"net.ipv4.ip_forward": "0"}]
        assert not (tmp_path / "dead" / "node").exists()
    finally:
        taken.release()


def test_a_dead_node_whose_state_dir_is_gone_is_undone_from_the_machine_copy(
        tmp_path: Path, machine: list[host.HostRecord]) -> None:
    _dead_node(tmp_path / "dead")
    shutil.rmtree(tmp_path / "dead")
    taken = lifecycle.acquire_lock(tmp_path / "next", 0, print)
    try:
        assert [r.bridge_made for r in machine] == [True]
    finally:
        taken.release()


def test_nothing_is_undone_after_a_clean_down(tmp_path: Path, machine: list[host.HostRecord]) -> None:
    taken = lifecycle.acquire_lock(tmp_path / "next", 0, print)
    taken.release()
    assert machine == []
