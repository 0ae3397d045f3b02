"""The pinned-build driver: pins, hashing, error messages (no Go build is run here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from localenv import tools
from localenv.__main__ import main


def test_every_tool_has_pins_and_a_go_file_naming_its_binaries() -> None:
    for tool in tools.TOOLS:
        gomod = (tool.module_dir / "go.mod").read_text()
        module = gomod.split("\n", 1)[0].removeprefix("module ").strip()
        if "require" in gomod:
            assert (tool.module_dir / "go.sum").stat().st_size > 0, tool.name
        assert "go 1.26" in gomod
        for binary in tool.binaries:
            if binary.package == module:  # a main package of our own (CoreDNS's plugin set, pause)
                assert "package main" in (tool.module_dir / "main.go").read_text(), tool.name
            else:  # an upstream main package, kept in go.mod by tools.go
                tools_go = (tool.module_dir / "tools.go").read_text()
                assert "//go:build tools" in tools_go
                assert f'"{binary.package}"' in tools_go, (tool.name, binary.package)


def test_the_node_binaries_come_from_the_same_kubernetes_build() -> None:
    kube = next(t for t in tools.TOOLS if t.name == "kubernetes")
    names = {b.name for b in kube.binaries}
    assert {"kubelet", "kube-proxy", "kube-apiserver"} <= names
    assert len({tools.ldflags_for(kube, b) for b in kube.binaries}) == 1  # so one `go build` makes them all
    pause = next(b for t in tools.TOOLS for b in t.binaries if b.name == "pause")
    assert pause.static


def test_kubernetes_staging_modules_are_replaced_with_the_matching_release() -> None:
    tool = next(t for t in tools.TOOLS if t.name == "kubernetes")
    version = tools.required_version(tool.module_dir, "k8s.io/kubernetes")
    minor = version.split(".", 1)[1]  # v1.37.2 -> 37.2
    text = (tool.module_dir / "go.mod").read_text()
    for staging in ("k8s.io/api", "k8s.io/apiserver", "k8s.io/client-go", "k8s.io/kubectl"):
        assert f"{staging} => {staging} v0.{minor}" in text


def test_kube_binaries_carry_the_pinned_version() -> None:
    tool = next(t for t in tools.TOOLS if t.name == "kubernetes")
    flags = tools.ldflags_for(tool, tool.binaries[0])
    version = tools.required_version(tool.module_dir, "k8s.io/kubernetes")
    assert f"gitVersion={version}" in flags
    helm = next(t for t in tools.TOOLS if t.name == "helm")
    helm_flags = tools.ldflags_for(helm, helm.binaries[0])
    assert "version.version=v3." in helm_flags
    assert "chartutil.k8sVersionMajor=1" in helm_flags


def test_pin_hash_is_stable_and_follows_every_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "tools"
    shutil.copytree(tools.TOOLS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    monkeypatch.setattr(tools, "TOOLS_DIR", copy)
    first = tools.pin_hash("go1.26.8")
    assert first == tools.pin_hash("go1.26.8")
    assert first != tools.pin_hash("go1.27.0")
    gosum = copy / "kwok" / "go.sum"
    gosum.write_text(gosum.read_text() + "\n")
    assert tools.pin_hash("go1.26.8") != first


def test_cache_root_honours_the_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAUNCH_AGENT_CACHE", str(tmp_path / "c"))
    assert tools.cache_root() == tmp_path / "c"


def test_missing_go_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(tools.BuildError, match="Go toolchain was not found"):
        tools.find_go(["", "/nonexistent/go"])

    real_find_go = tools.find_go

    def no_go() -> Path:
        return real_find_go(["/nonexistent/go"])

    monkeypatch.setattr(tools, "find_go", no_go)
    assert main(["build"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("localenv build: the Go toolchain was not found")


def test_download_failures_are_named(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text(
        "go: downloading k8s.io/api v0.37.2\n"
        "k8s.io/api@v0.37.2: Get \"https://proxy.golang.org/k8s.io/api/@v/v0.37.2.zip\": dial tcp: lookup proxy.golang.org: no such host\n"
    )
    message = tools._explain_failure(tools.TOOLS[0], log)
    assert message.startswith("module download failed while building etcd")
    assert "\n" not in message


def test_unknown_binary_is_refused() -> None:
    with pytest.raises(KeyError, match="unknown localenv tool"):
        tools.binary("docker")
