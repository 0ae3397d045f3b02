"""Container images built on this machine without a registry, cached by content hash.

Each builder returns an :class:`~localenv.images.oci.Archive`: an OCI archive under
``<cache>/oci-images/`` whose name (``localenv.local/<name>:<hash>``) carries the hash of
everything it was built from, so an unchanged input builds nothing and a changed one never
reuses a stale image. ``localenv.node`` imports archives into the real node's containerd.

- :func:`pause` — the sandbox image: the static ``pause`` binary of the localenv tools.
- :func:`busybox` — Debian's ``busybox-static`` with its applets.
- :func:`python_base` — a Debian bookworm rootfs from ``mmdebstrap`` (minbase + python3, venv,
  pip, CA certificates): the local stand-in for ``python:3.11-slim-bookworm``.
- :func:`build_dockerfile` — any Dockerfile, with Debian's ``buildah`` (vfs storage, chroot
  isolation), its ``FROM`` bases passed as ``oci-archive:`` build arguments.
- :func:`from_rootfs` — an image from a directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from localenv import tools
from localenv.images.oci import Archive, ImageConfig, layer_from_entries, read_archive, write_archive

REGISTRY = "localenv.local"
BUSYBOX = Path("/bin/busybox")
# pip in the base trusts the system CA bundle (as Debian's own pip does), so a build on a machine
# behind a TLS-inspecting proxy only has to bind-mount that machine's bundle over it.
PIP_CONF = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
HEARTBEAT_SECONDS = 30.0
BUILD_TIMEOUT = 1800.0

Log = Callable[[str], None]


class ImageError(RuntimeError):
    """An image could not be built; one line for the user, with a log path."""


def _default_log(line: str) -> None:
    print(f"[localenv images] {line}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return tools.cache_root() / "oci-images"


def _hash(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(b"\0")
        digest.update(part.encode() if isinstance(part, str) else part)
    return digest.hexdigest()[:16]


def tree_hash(root: Path, paths: Iterable[str]) -> str:
    """Hash of the files under *paths* (relative to *root*): names, modes and contents."""
    digest = hashlib.sha256()
    for rel in sorted(paths):
        base = root / rel
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(f"\0{path.relative_to(root)}\0{path.stat().st_mode & 0o777}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _locked(name: str) -> contextlib.AbstractContextManager[None]:
    return tools._locked(cache_dir() / "locks" / f"{name}.lock")


def _cached(name: str, key: str, make: Callable[[Path, str], Archive], log: Log) -> Archive:
    """The archive of *name* at *key*, made by ``make(out, ref)`` when it is not cached yet."""
    out = cache_dir() / f"{name}-{key}.oci.tar"
    ref = f"{REGISTRY}/{name}:{key}"
    if out.is_file():
        return read_archive(out)
    with _locked(f"{name}-{key}"):
        if out.is_file():
            return read_archive(out)
        t0 = time.monotonic()
        log(f"building image {ref} ...")
        archive = make(out, ref)
        log(f"image {ref} built in {time.monotonic() - t0:.0f} s ({archive.size / 1e6:.1f} MB of layers)")
        return archive


def run_logged(cmd: list[str], log_path: Path, what: str, log: Log, env: Mapping[str, str] | None = None,
               cwd: Path | None = None, timeout: float = BUILD_TIMEOUT) -> None:
    """Run a long command with its output in *log_path* and a progress line every 30 s."""
    start = time.monotonic()
    next_beat = start + HEARTBEAT_SECONDS
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log_file:
        log_file.write(f"$ {' '.join(cmd)}\n")
        log_file.flush()
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env) if env is not None else None, cwd=cwd)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                now = time.monotonic()
                if now - start > timeout:
                    proc.kill()
                    raise ImageError(f"{what}: timed out after {timeout:.0f} s (log: {log_path})")
                if now >= next_beat:
                    log(f"  {what}: still running ({now - start:.0f} s)")
                    next_beat += HEARTBEAT_SECONDS
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        last = lines[-1].strip()[:240] if lines else "no output"
        raise ImageError(f"{what} failed: {last} (log: {log_path})")


# --- the small images ----------------------------------------------------------------------

def pause(log: Log = _default_log) -> Archive:
    binary = tools.binary("pause")
    content = binary.read_bytes()
    key = _hash("pause/1", content)

    def make(out: Path, ref: str) -> Archive:
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            layer = layer_from_entries(Path(tmp) / "layer.tar", [("pause", content, 0o755, None)])
            config = ImageConfig(entrypoint=["/pause"], env={}, user="65535:65535")
            return write_archive(out, ref, [layer], config, "localenv: pause")

    return _cached("pause", key, make, log)


def busybox(log: Log = _default_log) -> Archive:
    if not BUSYBOX.is_file():
        raise ImageError(f"{BUSYBOX} is missing: install Debian's busybox-static (localenv/node/packages.txt)")
    content = BUSYBOX.read_bytes()
    key = _hash("busybox/1", content)

    def make(out: Path, ref: str) -> Archive:
        applets = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True).stdout
        entries: list[tuple[str, bytes | None, int, str | None]] = [
            (d, None, 0o755, None) for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "tmp", "root")]
        entries[-2] = ("tmp", None, 0o1777, None)
        entries.append(("bin/busybox", content, 0o755, None))
        for applet in sorted(set(applets.split())):
            if applet != "bin/busybox":
                entries.append((applet, None, 0o777, "/bin/busybox"))
        entries.append(("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
                        0o644, None))
        entries.append(("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644, None))
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            layer = layer_from_entries(Path(tmp) / "layer.tar", entries)
            config = ImageConfig(cmd=["sh"], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            return write_archive(out, ref, [layer], config, "localenv: busybox-static")

    return _cached("busybox", key, make, log)


def from_rootfs(name: str, rootfs: Path, config: ImageConfig, log: Log = _default_log) -> Archive:
    """An image of the directory *rootfs* (one layer)."""
    key = _hash("rootfs/1", tree_hash(rootfs, ["."]), repr(config))

    def make(out: Path, ref: str) -> Archive:
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            layer = Path(tmp) / "layer.tar"
            with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
                for path in sorted(rootfs.rglob("*")):
                    tar.add(str(path), arcname=str(path.relative_to(rootfs)), recursive=False)
            return write_archive(out, ref, [layer], config, f"localenv: rootfs {rootfs.name}")

    return _cached(name, key, make, log)


# --- the Python base: a Debian rootfs from mmdebstrap -------------------------------------

def python_base(log: Log = _default_log) -> Archive:
    """Debian bookworm with python3 (3.11), venv, pip and useradd — what the agent's Dockerfile
    expects of its base: the mmdebstrap root filesystem of ``localenv.buildservers.baseimage``
    (the same one the Kaniko builds start from), plus a pip config trusting the system CA bundle."""
    from localenv.buildservers import baseimage

    key = _hash("python-base/4", baseimage.recipe(), PIP_CONF)

    def make(out: Path, ref: str) -> Archive:
        rootfs = baseimage.python_rootfs(log)
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            pip_layer = layer_from_entries(Path(tmp) / "pip.tar", [("etc/pip.conf", PIP_CONF.encode(), 0o644, None)])
            config = ImageConfig(cmd=["python3"], env={
                "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
            return write_archive(out, ref, [rootfs, pip_layer], config, f"mmdebstrap {baseimage.recipe()}")

    return _cached("python-base", key, make, log)


def base_build_arg(archive: Archive) -> str:
    """How a Dockerfile's ``FROM ${ARG}`` names a local archive for buildah."""
    return f"oci-archive:{archive.path}"


from localenv.images.buildah import build_dockerfile  # noqa: E402  (re-exported)

__all__ = ["Archive", "ImageConfig", "ImageError", "base_build_arg", "build_dockerfile", "busybox", "cache_dir",
           "from_rootfs", "pause", "python_base", "tree_hash"]
