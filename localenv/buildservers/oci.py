"""Pushing a single-layer image to a registry over the OCI distribution API (for base images the
test builds pull, and for images whose existence the agent checks)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_from_files(files: dict[str, bytes], mode: int = 0o755) -> bytes:
    """An uncompressed tar layer holding *files* (path -> content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _upload_blob(http: httpx.Client, base: str, repo: str, data: bytes) -> str:
    digest = _digest(data)
    if http.head(f"{base}/v2/{repo}/blobs/{digest}").status_code == 200:
        return digest
    start = http.post(f"{base}/v2/{repo}/blobs/uploads/")
    start.raise_for_status()
    location = start.headers["location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    put = http.put(f"{location}{sep}digest={digest}", content=data,
                   headers={"Content-Type": "application/octet-stream"})
    put.raise_for_status()
    return digest


def compress(layer_tar: bytes | Path) -> tuple[bytes, str]:
    """(gzipped layer, diff id) of an uncompressed tar layer."""
    raw = layer_tar.read_bytes() if isinstance(layer_tar, Path) else layer_tar
    return gzip.compress(raw, compresslevel=1, mtime=0), _digest(raw)


def push(base: str, repo: str, tag: str, layer_tar: bytes | Path | tuple[bytes, str], *,
         env: list[str] | None = None, entrypoint: list[str] | None = None, cmd: list[str] | None = None,
         user: str = "", auth: tuple[str, str] | None = None) -> str:
    """Push a one-layer linux/amd64 image to ``base`` (http://host:port); returns the manifest digest.

    *layer_tar* is an uncompressed tar (bytes or a file) or what ``compress`` returned."""
    compressed, diff_id = layer_tar if isinstance(layer_tar, tuple) else compress(layer_tar)
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                         **({"Entrypoint": entrypoint} if entrypoint else {}), **({"Cmd": cmd} if cmd else {}),
                         **({"User": user} if user else {})},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    with httpx.Client(timeout=120.0, auth=auth) as http:
        layer_digest = _upload_blob(http, base, repo, compressed)
        config_digest = _upload_blob(http, base, repo, config_bytes)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
                    "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(compressed)}]}
        body = json.dumps(manifest).encode()
        resp = http.put(f"{base}/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
        resp.raise_for_status()
    return _digest(body)
