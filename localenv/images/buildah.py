"""Dockerfile builds with Debian's buildah: vfs storage and chroot isolation (no daemon, no
overlay-on-overlay), storage in the image cache, the result pushed to an OCI archive.

Bases come in as build arguments naming ``oci-archive:`` paths, so nothing is pulled from a
registry. When the machine's pip is told to trust extra certificates (``PIP_CERT`` or pip's
``cert`` setting, as behind a TLS-inspecting proxy), RUN steps see the same: the machine's
CA bundle is bind-mounted over the image's for the build only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from localenv import images
from localenv.images.oci import Archive, read_archive

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _storage_args() -> list[str]:
    store = images.cache_dir() / "buildah"
    return ["--root", str(store / "root"), "--runroot", str(store / "runroot"), "--storage-driver", "vfs"]


def host_pip_cert() -> Path | None:
    """The CA bundle the machine's pip is configured with, if any."""
    value = os.environ.get("PIP_CERT")
    if not value:
        proc = subprocess.run(["python3", "-m", "pip", "config", "get", "global.cert"], capture_output=True,
                              text=True, check=False, timeout=60)
        value = proc.stdout.strip() if proc.returncode == 0 else ""
    path = Path(value) if value else None
    return path if path and path.is_file() else None


def _trust_volumes() -> list[str]:
    """The machine's CA bundle over the image's, for RUN steps only (pip in the local base is
    configured to use the system bundle). Mounted onto a file the base has, so nothing is left
    in the layers."""
    cert = host_pip_cert()
    return [] if cert is None else ["--volume", f"{cert}:{HOST_CA_BUNDLE}:ro"]


def build_dockerfile(
    name: str,
    dockerfile: Path,
    context: Path,
    inputs: Iterable[str],
    build_args: Mapping[str, str] | None = None,
    bases: Mapping[str, Archive] | None = None,
    log: images.Log = images._default_log,
) -> Archive:
    """Build *dockerfile* with *context*; cached by the Dockerfile, the files under *inputs*
    (paths relative to *context*), the build arguments and the bases' manifests."""
    if shutil.which("buildah") is None:
        raise images.ImageError("buildah is missing: install Debian's buildah (localenv/node/packages.txt)")
    args = dict(build_args or {})
    for arg, base in (bases or {}).items():
        args[arg] = images.base_build_arg(base)
    key = images._hash(
        "dockerfile/1", dockerfile.read_bytes(), images.tree_hash(context, inputs),
        *sorted(f"{k}={v}" for k, v in (build_args or {}).items()),
        *sorted(f"{k}={b.manifest_digest}" for k, b in (bases or {}).items()),
    )

    def make(out: Path, ref: str) -> Archive:
        work = images.cache_dir() / "work" / f"{name}-{key}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        env = {**os.environ, "TMPDIR": str(work), "BUILDAH_ISOLATION": "chroot"}
        log_path = images.cache_dir() / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")
        tag = f"{ref}-build"
        cmd = ["buildah", *_storage_args(), "bud", "--isolation", "chroot", "--network", "host",
               "--pull=never", "--layers=false", "-f", str(dockerfile), "-t", tag,
               *_trust_volumes(), *[f"--build-arg={k}={v}" for k, v in sorted(args.items())], str(context)]
        try:
            images.run_logged(cmd, log_path, f"buildah bud {dockerfile.name}", log, env=env)
            partial = out.with_name(out.name + ".partial")
            images.run_logged(["buildah", *_storage_args(), "push", "--quiet", tag, f"oci-archive:{partial}:{ref}"],
                              log_path, "buildah push", log, env=env)
            partial.replace(out)
        finally:
            subprocess.run(["buildah", *_storage_args(), "rmi", "--force", tag], capture_output=True, env=env,
                           check=False, timeout=300)
            shutil.rmtree(work, ignore_errors=True)
        return read_archive(out)

    return images._cached(name, key, make, log)
