"""The fetched source is opened up for any user, as the official init container does, by a
fetcher that runs as the agent image's non-root user: in a pod the volume's root is the
kubelet's (root, mode 0777), which that user may write into but not chmod."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.source.materialize import _make_writable

FETCHER = 1000


@pytest.fixture
def as_non_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel's rule for a process without CAP_FOWNER: only a path's owner may chmod it."""
    chmod = Path.chmod

    def owner_only(self: Path, mode: int, **kw: object) -> None:
        if self.stat().st_uid != FETCHER:
            raise PermissionError(1, "Operation not permitted", str(self))
        chmod(self, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "geteuid", lambda: FETCHER)
    monkeypatch.setattr(Path, "chmod", owner_only)


def _tree(root: Path) -> None:
    (root / "pkg").mkdir()
    (root / "pkg" / "helper.py").write_text("VALUE = 42\n")
    (root / "train.py").write_text("print(1)\n")
    for path in (root / "pkg", root / "pkg" / "helper.py", root / "train.py"):
        os.chown(path, FETCHER, FETCHER)
    os.chmod(root / "train.py", 0o644)
    os.chmod(root / "pkg", 0o755)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_volume_root_the_fetcher_does_not_own_is_left_as_the_kubelet_made_it(tmp_path: Path, as_non_root: None):
    root = tmp_path / "mnt"
    root.mkdir()
    os.chmod(root, 0o777)
    _tree(root)
    _make_writable(root)
    assert (root / "train.py").stat().st_mode & 0o777 == 0o666 | 0o644
    assert (root / "pkg").stat().st_mode & 0o777 == 0o777
    assert root.stat().st_mode & 0o777 == 0o777


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_path_of_its_own_it_cannot_open_up_is_still_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "mnt"
    root.mkdir()
    os.chmod(root, 0o755)
    monkeypatch.setattr(os, "geteuid", lambda: root.stat().st_uid)
    monkeypatch.setattr(Path, "chmod", lambda self, mode, **kw: (_ for _ in ()).throw(PermissionError(1, "no")))
    with pytest.raises(PermissionError):
        _make_writable(root)
