"""OCI image archives written in Python: one uncompressed layer from a directory or a tar, an
image config, a manifest and an index naming the image — what ``ctr images import`` and
buildah's ``oci-archive:`` transport read."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20


@dataclass
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=lambda: {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    user: str = ""
    workdir: str = ""

    def document(self, diff_ids: list[str], created_by: str) -> dict:
        config: dict = {"Env": [f"{k}={v}" for k, v in self.env.items()]}
        if self.entrypoint:
            config["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            config["Cmd"] = list(self.cmd)
        if self.user:
            config["User"] = self.user
        if self.workdir:
            config["WorkingDir"] = self.workdir
        return {
            "created": "1970-01-01T00:00:00Z", "architecture": "amd64", "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            # One entry per layer: buildah checks that they match.
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": f"{created_by} (layer {i + 1})"}
                        for i in range(len(diff_ids))],
        }


@dataclass(frozen=True)
class Archive:
    """An OCI archive on disk and the name it imports as."""

    ref: str
    path: Path
    manifest_digest: str
    size: int  # bytes of its layers (uncompressed)


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return "sha256:" + digest.hexdigest(), size


def _deterministic(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uname = info.gname = ""
    return info


def layer_from_entries(out: Path, entries: Iterable[tuple[str, bytes | None, int, str | None]]) -> Path:
    """A layer tar from (path, content, mode, symlink target) entries; directories have no content."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, content, mode, link in entries:
            info = tarfile.TarInfo(name.lstrip("/"))
            info.mode = mode
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(_deterministic(info))
            elif content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(_deterministic(info))
            else:
                info.size = len(content)
                tar.addfile(_deterministic(info), io.BytesIO(content))
    return out


def write_archive(out: Path, ref: str, layers: list[Path], config: ImageConfig, created_by: str) -> Archive:
    """Write an OCI archive of *layers* (uncompressed tars, bottom first) named *ref*."""
    blobs: list[tuple[str, int, Path | bytes]] = []
    layer_descs = []
    for layer in layers:
        digest, size = _sha256_file(layer)
        blobs.append((digest, size, layer))
        layer_descs.append({"mediaType": MEDIA_LAYER, "digest": digest, "size": size})
    config_bytes = json.dumps(config.document([d["digest"] for d in layer_descs], created_by),
                              sort_keys=True).encode()
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    blobs.append((config_digest, len(config_bytes), config_bytes))
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
                "layers": layer_descs}
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    blobs.append((manifest_digest, len(manifest_bytes), manifest_bytes))
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": MEDIA_MANIFEST, "digest": manifest_digest, "size": len(manifest_bytes),
        "annotations": {NAME_ANNOTATION: ref, REF_ANNOTATION: ref}}]}
    tmp = out.with_name(out.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(_deterministic(info), io.BytesIO(data))

        add_bytes("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add_bytes("index.json", json.dumps(index, sort_keys=True).encode())
        for digest, _, blob in blobs:
            name = "blobs/sha256/" + digest.split(":", 1)[1]
            if isinstance(blob, bytes):
                add_bytes(name, blob)
            else:
                info = tar.gettarinfo(str(blob), arcname=name)
                with blob.open("rb") as handle:
                    tar.addfile(_deterministic(info), handle)
    tmp.replace(out)
    return Archive(ref, out, manifest_digest, sum(d["size"] for d in layer_descs))


def read_archive(path: Path) -> Archive:
    """The name, manifest digest and layer size of an OCI archive (ours or buildah's)."""
    with tarfile.open(path) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        desc = index["manifests"][0]
        member = tar.extractfile("blobs/sha256/" + desc["digest"].split(":", 1)[1])
        manifest = json.load(member)  # type: ignore[arg-type]
    notes = desc.get("annotations", {})
    ref = notes.get(NAME_ANNOTATION) or notes.get(REF_ANNOTATION, "")
    return Archive(ref, path, desc["digest"], sum(int(layer["size"]) for layer in manifest["layers"]))
