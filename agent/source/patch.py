"""`apply_patch`: a git job's `diff.patch` (the uncommitted changes W&B saved with the run that made
the job, as `git diff` writes them) applied to the checked-out commit, as the official agent does
with ``patch -p1``. Modified, new, deleted and renamed files, mode changes and "No newline at end of
file"; each hunk must match its old lines exactly, at its line number or the nearest place in the
file (as `patch` looks for it, without fuzz). Binary changes cannot be applied from a text diff and
are refused with the file's name."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_ESCAPES = {b"n": b"\n", b"t": b"\t", b'"': b'"', b"\\": b"\\", b"a": b"\a", b"b": b"\b", b"f": b"\f",
            b"r": b"\r", b"v": b"\v"}


class PatchError(Exception):
    """The patch does not apply: one line naming the file."""


@dataclass
class _Hunk:
    old_start: int
    old: list[bytes] = field(default_factory=list)  # lines with their line endings
    new: list[bytes] = field(default_factory=list)


@dataclass
class _FilePatch:
    old: str | None = None  # None: a new file
    new: str | None = None  # None: deleted
    mode: int | None = None
    binary: bool = False
    hunks: list[_Hunk] = field(default_factory=list)


def _unquote(raw: bytes) -> bytes:
    """git's C-style quoting of unusual paths ("a/sp\\303\\251cial")."""
    if not raw.startswith(b'"'):
        return raw
    body, out, i = raw[1:-1], bytearray(), 0
    while i < len(body):
        if body[i:i + 1] == b"\\" and i + 1 < len(body):
            nxt = body[i + 1:i + 2]
            if nxt.isdigit():
                out.append(int(body[i + 1:i + 4], 8))
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt)
            i += 2
            continue
        out += body[i:i + 1]
        i += 1
    return bytes(out)


def _path(raw: bytes) -> str | None:
    """A ---/+++ path without its first component (``-p1``); None for /dev/null."""
    text = _unquote(raw.rstrip(b"\r\n").split(b"\t")[0].rstrip())
    if text == b"/dev/null":
        return None
    parts = text.split(b"/", 1)
    return (parts[1] if len(parts) == 2 else parts[0]).decode("utf-8", "surrogateescape")


def parse_patch(data: bytes) -> list[_FilePatch]:
    lines = data.splitlines(keepends=True)
    files: list[_FilePatch] = []
    current: _FilePatch | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(b"diff --git "):
            current = _FilePatch()
            files.append(current)
            header = line[len(b"diff --git "):].rstrip(b"\r\n")
            if not header.startswith(b'"') and b" b/" in header:
                old, new = header.split(b" b/", 1)
                current.old, current.new = _path(old), _path(b"b/" + new)
        elif current is None and line.startswith(b"--- "):
            current = _FilePatch()
            files.append(current)
            continue  # read again as the file's --- line
        elif current is None:
            pass  # text before the first file (a commit message, say)
        elif line.startswith((b"new file mode ", b"new mode ")):
            current.mode = int(line.split()[-1], 8)
            if line.startswith(b"new file"):
                current.old = None
        elif line.startswith(b"deleted file mode "):
            current.new = None
        elif line.startswith(b"rename from ") or line.startswith(b"copy from "):
            current.old = _unquote(line.split(b" ", 2)[2].rstrip(b"\r\n")).decode("utf-8", "surrogateescape")
        elif line.startswith(b"rename to ") or line.startswith(b"copy to "):
            current.new = _unquote(line.split(b" ", 2)[2].rstrip(b"\r\n")).decode("utf-8", "surrogateescape")
        elif line.startswith(b"Binary files ") or line.startswith(b"GIT binary patch"):
            current.binary = True
        elif line.startswith(b"--- "):
            current.old = _path(line[4:])
        elif line.startswith(b"+++ "):
            current.new = _path(line[4:])
        elif line.startswith(b"@@ "):
            i = _read_hunk(lines, i, current)
            continue
        i += 1
    return files


def _read_hunk(lines: list[bytes], i: int, target: _FilePatch) -> int:
    found = _HUNK.match(lines[i])
    if not found:
        raise PatchError(f"diff.patch has a malformed hunk header: {lines[i][:80]!r}")
    old_left = int(found[2]) if found[2] is not None else 1
    new_left = int(found[4]) if found[4] is not None else 1
    hunk = _Hunk(old_start=int(found[1]))
    target.hunks.append(hunk)
    i += 1
    last: list[list[bytes]] = []
    while i < len(lines) and (old_left > 0 or new_left > 0 or lines[i].startswith(b"\\")):
        line = lines[i]
        kind, text = line[:1], line[1:]
        if line.startswith(b"\\"):  # "\ No newline at end of file": the line before has none
            for seq in last:
                seq[-1] = seq[-1].rstrip(b"\r\n") if seq[-1].endswith(b"\r\n") else seq[-1].rstrip(b"\n")
        elif kind in (b" ", b"\n", b"\r"):
            text = text if kind == b" " else line
            hunk.old.append(text)
            hunk.new.append(text)
            old_left, new_left, last = old_left - 1, new_left - 1, [hunk.old, hunk.new]
        elif kind == b"-":
            hunk.old.append(text)
            old_left, last = old_left - 1, [hunk.old]
        elif kind == b"+":
            hunk.new.append(text)
            new_left, last = new_left - 1, [hunk.new]
        else:
            raise PatchError(f"diff.patch: unexpected line in a hunk: {line[:80]!r}")
        i += 1
    if old_left > 0 or new_left > 0:
        raise PatchError("diff.patch ends in the middle of a hunk")
    return i


def _place(content: list[bytes], hunk: _Hunk, expected: int) -> int:
    """Where the hunk's old lines are: at `expected` or the nearest match."""
    size = len(hunk.old)
    if size == 0:
        return min(max(expected, 0), len(content))
    for distance in range(len(content) + 1):
        for at in (expected - distance, expected + distance):
            if 0 <= at <= len(content) - size and content[at:at + size] == hunk.old:
                return at
    return -1


def _inside(root: Path, rel: str) -> Path:
    path = (root / rel).resolve()
    if rel.startswith("/") or root not in path.parents:
        raise PatchError(f"diff.patch names a file outside the code: {rel!r}")
    return path


def apply_patch(root: Path, data: bytes) -> int:
    """Apply `data` to the tree at `root`; the number of files changed. PatchError if it does not apply."""
    root = root.resolve()
    files = parse_patch(data)
    for fp in files:
        name = fp.new or fp.old or "?"
        if fp.binary:
            raise PatchError(f"diff.patch changes the binary file {name}, which a text diff cannot carry")
        source = _inside(root, fp.old) if fp.old is not None else None
        target = _inside(root, fp.new) if fp.new is not None else None
        if source is not None and not source.is_file():
            raise PatchError(f"diff.patch changes {fp.old}, which the commit does not have")
        if source is None and target is not None and target.exists():
            raise PatchError(f"diff.patch creates {fp.new}, which the commit already has")
        content = source.read_bytes().splitlines(keepends=True) if source is not None else []
        offset = 0
        for hunk in fp.hunks:
            expected = (hunk.old_start - 1 if hunk.old else hunk.old_start) + offset
            at = _place(content, hunk, expected)
            if at < 0:
                raise PatchError(f"diff.patch does not apply to {fp.old or fp.new} (hunk at line {hunk.old_start}); "
                                 "the commit is not the one the patch was made on")
            content[at:at + len(hunk.old)] = hunk.new
            offset += len(hunk.new) - len(hunk.old)
        mode = source.stat().st_mode & 0o777 if source is not None else 0o644
        if source is not None and (target is None or target != source):
            source.unlink()
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"".join(content))
            if fp.mode is not None:
                mode = 0o755 if fp.mode & 0o111 else 0o644
            target.chmod(mode)
    return len(files)
