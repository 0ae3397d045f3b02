"""Pins of the image-build tools and servers: complete, exact, and hashed apart from the Kubernetes tools."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from localenv import tools
from localenv.buildservers import install


def test_image_tools_are_pinned_and_static() -> None:
    for tool in tools.IMAGE_TOOLS:
        gomod = (tool.module_dir / "go.mod").read_text()
        tools_go = (tool.module_dir / "tools.go").read_text()
        assert (tool.module_dir / "go.sum").stat().st_size > 0
        for binary in tool.binaries:
            assert f'"{binary.package}"' in tools_go and binary.static
    assert tools.required_version(tools.IMAGE_TOOLS[0].module_dir, tools.KANIKO) == "v1.24.0"
    assert "github.com/distribution/distribution/v3 v3.1.2" in gomod
    flags = tools.ldflags_for(tools.IMAGE_TOOLS[0], tools.IMAGE_TOOLS[0].binaries[0])
    assert f"{tools.KANIKO}/pkg/version.version=v1.24.0" in flags


def test_the_two_sets_hash_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "tools"
    shutil.copytree(tools.TOOLS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    monkeypatch.setattr(tools, "TOOLS_DIR", copy)
    kube, images = tools.pin_hash("go1.26.8", tools.KUBE_SET), tools.pin_hash("go1.26.8", tools.IMAGE_SET)
    gosum = copy / "images" / "go.sum"
    gosum.write_text(gosum.read_text() + "\n")
    assert tools.pin_hash("go1.26.8", tools.KUBE_SET) == kube
    assert tools.pin_hash("go1.26.8", tools.IMAGE_SET) != images
    assert "executor" in {b for ts in tools.TOOL_SETS for b in ts.binaries}


def test_server_pins_are_exact() -> None:
    lines = [ln for ln in install.MOTO_PINS.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines and all("==" in ln for ln in lines)
    assert "moto[server]==5.2.5" in lines
    package = json.loads((install.AZURITE_DIR / "package.json").read_text())
    lock = json.loads((install.AZURITE_DIR / "package-lock.json").read_text())
    assert package["dependencies"] == {"azurite": "3.37.0"}
    assert lock["packages"]["node_modules/azurite"]["version"] == "3.37.0"
