"""OCI archives written in Python, and the content-hash cache keys of the local images."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from localenv import images
from localenv.images.oci import ImageConfig, layer_from_entries, read_archive, write_archive


def _archive(tmp_path: Path, content: bytes, name: str = "a") -> Path:
    layer = layer_from_entries(tmp_path / f"{name}.layer.tar", [("bin", None, 0o755, None),
                                                               ("bin/tool", content, 0o755, None),
                                                               ("bin/alias", None, 0o777, "/bin/tool")])
    out = tmp_path / f"{name}.oci.tar"
    write_archive(out, "localenv.local/x:1", [layer], ImageConfig(entrypoint=["/bin/tool"], user="1000"), "test")
    return out


def test_an_archive_names_its_image_and_is_reproducible(tmp_path: Path) -> None:
    first = read_archive(_archive(tmp_path, b"#!/bin/sh\necho hi\n", "a"))
    again = read_archive(_archive(tmp_path, b"#!/bin/sh\necho hi\n", "b"))
    other = read_archive(_archive(tmp_path, b"#!/bin/sh\necho bye\n", "c"))
    assert first.ref == "localenv.local/x:1"
    assert first.manifest_digest == again.manifest_digest != other.manifest_digest
    with tarfile.open(first.path) as tar:
        assert json.load(tar.extractfile("oci-layout"))["imageLayoutVersion"] == "1.0.0"  # type: ignore[arg-type]
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(tar.extractfile("blobs/sha256/" + index["manifests"][0]["digest"][7:]))  # type: ignore[arg-type]
        config = json.load(tar.extractfile("blobs/sha256/" + manifest["config"]["digest"][7:]))  # type: ignore[arg-type]
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "localenv.local/x:1"
    assert config["config"]["Entrypoint"] == ["/bin/tool"] and config["config"]["User"] == "1000"
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]


def test_the_tree_hash_follows_content_and_ignores_bytecode(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    first = images.tree_hash(tmp_path, ["pkg"])
    (tmp_path / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    assert images.tree_hash(tmp_path, ["pkg"]) == first
    (tmp_path / "pkg" / "mod.py").write_text("x = 2\n")
    assert images.tree_hash(tmp_path, ["pkg"]) != first


def test_image_names_carry_the_hash_of_their_inputs() -> None:
    archive = images.busybox(log=lambda _line: None)
    name, _, tag = archive.ref.rpartition(":")
    assert name == "localenv.local/busybox" and len(tag) == 16
    assert images.busybox(log=lambda _line: None) == archive  # cached: nothing is rebuilt
