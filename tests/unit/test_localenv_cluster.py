"""Process supervision and state-directory rules (no control plane needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from localenv import cluster, kubeconfig, pki
from localenv.__main__ import main


def test_free_ports_are_distinct_loopback_ports() -> None:
    ports = cluster.free_ports(["a", "b", "c", "d"])
    assert len(set(ports.values())) == 4 and all(p > 0 for p in ports.values())


def test_stop_pids_stops_only_processes_of_its_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", str(state)])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", str(tmp_path / "elsewhere")])
    try:
        assert cluster.is_ours(ours.pid, state)
        assert not cluster.is_ours(other.pid, state)
        stopped = cluster.stop_pids({"etcd": ours.pid, "kwok": other.pid}, state, grace=5)
        assert stopped == ["etcd"]
        assert ours.poll() is not None
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_down_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(cluster.LocalenvError, match="not removing"):
        cluster.down(tmp_path)
    assert (tmp_path / "precious.txt").exists()


def test_up_refuses_a_non_empty_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(cluster.LocalenvError, match="not a localenv state directory"):
        cluster.up(tmp_path, bin_dir=tmp_path)
    assert (tmp_path / "precious.txt").exists()


def test_env_without_a_localenv_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "--state-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no localenv in" in err[0]


def test_state_round_trips_and_exports(tmp_path: Path) -> None:
    state = cluster.State(state_dir=str(tmp_path), server="https://127.0.0.1:1", kubeconfig=str(tmp_path / "kubeconfig"),
                          bin_dir="/b", ports={"apiserver": 1}, emulator_url="http://127.0.0.1:2")
    state.save()
    loaded = cluster.State.load(tmp_path)
    assert loaded == state
    assert loaded.env()["KUBECONFIG"].endswith("kubeconfig")
    assert loaded.env()["WANDB_BASE_URL"] == "http://127.0.0.1:2"


def test_client_kubeconfig_is_self_contained(tmp_path: Path) -> None:
    p = pki.create(tmp_path / "pki")
    path = kubeconfig.write_client_cert(tmp_path / "kubeconfig", "https://127.0.0.1:6443", p.ca.cert,
                                        p.admin.cert, p.admin.key, "admin")
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "admin"
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert doc["users"][0]["user"]["client-key-data"]
    assert (path.stat().st_mode & 0o777) == 0o600


def test_up_retries_when_a_chosen_port_was_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def flaky(*args: object) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise cluster.LocalenvError("etcd exited: listen tcp 127.0.0.1:4242: bind: address already in use")
        return "state"

    monkeypatch.setattr(cluster, "_up_once", flaky)
    assert cluster.up(tmp_path / "s", bin_dir=tmp_path) == "state"
    assert len(calls) == 3

    def broken(*args: object) -> str:
        raise cluster.LocalenvError("kube-apiserver exited: bad flag")

    monkeypatch.setattr(cluster, "_up_once", broken)
    with pytest.raises(cluster.LocalenvError, match="bad flag"):
        cluster.up(tmp_path / "t", bin_dir=tmp_path)


def test_up_retries_when_etcd_exits_before_logging_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    silent = f"etcd exited while waiting for etcd /health; log {tmp_path}/s/logs/etcd.log:\n"

    def flaky(*args: object) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise cluster.LocalenvError(silent)
        return "state"

    monkeypatch.setattr(cluster, "_up_once", flaky)
    assert cluster.up(tmp_path / "s", bin_dir=tmp_path) == "state" and len(calls) == 2

    def loud(*args: object) -> str:
        raise cluster.LocalenvError(silent + "    panic: corrupt data dir")

    monkeypatch.setattr(cluster, "_up_once", loud)
    with pytest.raises(cluster.LocalenvError, match="corrupt"):
        cluster.up(tmp_path / "t", bin_dir=tmp_path)


def test_emulator_subcommand_hands_all_arguments_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(cluster, "emulator_available", lambda: True)
    monkeypatch.setattr("os.execv", lambda path, argv: seen.append(list(argv)))
    assert main(["emulator", "--port", "8080", "--state-file", "s.json"]) == 0
    assert seen == [[sys.executable, "-m", "localenv.wandb_emulator", "--port", "8080", "--state-file", "s.json"]]
