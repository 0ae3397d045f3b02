"""The build context: a reproducible ``tar.gz`` of the code and ``Dockerfile.wandb``, and the image tag.

The tag is the official agent's: the first 8 hex characters of sha256(source string +
Dockerfile text), so one job version with one Dockerfile always maps to one image and an
unchanged version is never rebuilt. The archive is reproducible (sorted entries, zero
timestamps and owners), so the same code gives the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.build.dockerfile import DockerfileChoice, choose
from agent.build.source import DOCKERFILE_NAME, BuildError, BuildSource

SKIP_NAMES = frozenset({".git", "fsmonitor--daemon.ipc", "__pycache__"})


def image_tag(source_string: str, dockerfile_text: str) -> str:
    return hashlib.sha256((source_string + dockerfile_text).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class BuildContext:
    tag: str
    dockerfile: DockerfileChoice
    archive: Path  # the tar.gz
    size: int
    digest: str  # sha256 of the archive


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES)
        base = Path(dirpath)
        yield base
        for name in sorted(filenames):
            if name not in SKIP_NAMES:
                yield base / name
        for name in dirnames:  # symlinked directories are not descended into, but kept as links
            if (base / name).is_symlink():
                yield base / name


def _info(name: str, path: Path | None = None, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path is None:
        info.size = size
        info.mode = 0o644
        return info
    st = path.lstat()
    info.mode = st.st_mode & 0o777
    if path.is_symlink():
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
    elif path.is_dir():
        info.type = tarfile.DIRTYPE
    else:
        info.size = st.st_size
    return info


def write_archive(choice: DockerfileChoice, out: Path) -> None:
    prefix = "src/" if choice.kind == "generated" else ""
    extra = {name: data for name, data in choice.extra_files}
    extra[DOCKERFILE_NAME] = choice.text.encode()
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_dir_info("."))
        if prefix:
            tar.addfile(_dir_info("src"))
        for path in _walk(choice.context_root):
            rel = path.relative_to(choice.context_root).as_posix()
            if rel == ".":
                continue
            if not prefix and rel in extra:
                continue  # ours wins over a file of that name in the code
            if not (path.is_symlink() or path.is_dir() or path.is_file()):
                continue  # sockets, fifos, devices
            info = _info(prefix + rel, path)
            if info.isreg():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
        for name in sorted(extra):
            tar.addfile(_info(name, size=len(extra[name])), io.BytesIO(extra[name]))


def _dir_info(name: str) -> tarfile.TarInfo:
    info = _info(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


def create(source: BuildSource, workdir: Path) -> BuildContext:
    """Choose or generate the Dockerfile and write the context archive into *workdir*."""
    if not source.directory.is_dir():
        raise BuildError(f"the job's code directory {source.directory} does not exist", stage="agent")
    choice = choose(source)
    tag = image_tag(source.source_string, choice.text)
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"context-{tag}.tgz"
    write_archive(choice, out)
    digest = hashlib.sha256()
    with out.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return BuildContext(tag, choice, out, out.stat().st_size, digest.hexdigest())
