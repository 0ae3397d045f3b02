"""A small git client: fetch one commit over smart HTTP (protocol v2, shallow) and check it out.

Enough for a job's source (`wandb-job.json` names a remote and a full commit): no history, no
working tree metadata, no submodules. Protocol v2 lets a client ask for any commit by id, so the
commit needs no branch; a server that only speaks the old protocol is refused with a clear
message. Credentials come from a git-credentials file (``https://user:token@host``), the format
of the chart's ``gitCreds``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import ssl
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx2 as httpx

from agent import __version__

_SHA = re.compile(r"^[0-9a-f]{40}$")
_TYPES = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}
_CHUNK = 1 << 16


class GitError(Exception):
    """The commit cannot be fetched: one line a person can act on."""


@dataclass(frozen=True)
class Credential:
    scheme: str
    host: str
    path: str
    username: str
    password: str


def read_credentials(text: str) -> list[Credential]:
    """Lines of a git-credentials file (``scheme://user:password@host[:port][/path]``)."""
    found = []
    for line in text.splitlines():
        url = urlsplit(line.strip())
        if url.scheme in ("http", "https") and url.hostname and url.username is not None:
            host = url.hostname + (f":{url.port}" if url.port else "")
            found.append(Credential(url.scheme, host.lower(), url.path.strip("/"), unquote(url.username),
                                    unquote(url.password or "")))
    return found


def credential_for(remote: str, credentials: list[Credential]) -> Credential | None:
    url = urlsplit(remote)
    host = ((url.hostname or "") + (f":{url.port}" if url.port else "")).lower()
    path = url.path.strip("/")
    for cred in credentials:
        if cred.scheme == url.scheme and cred.host == host and (not cred.path or path.startswith(cred.path)):
            return cred
    return None


def _pkt(line: str | bytes) -> bytes:
    data = line.encode() if isinstance(line, str) else line
    return f"{len(data) + 4:04x}".encode() + data


def _pkt_lines(data: bytes, pos: int = 0):  # type: ignore[no-untyped-def]
    """(kind, payload, next position); kind is "data", "flush" (0000) or "delim" (0001)."""
    while pos + 4 <= len(data):
        try:
            length = int(data[pos:pos + 4], 16)
        except ValueError:
            raise GitError("the git server sent a malformed response") from None
        if length == 0:
            yield "flush", b"", pos + 4
            pos += 4
        elif length == 1:
            yield "delim", b"", pos + 4
            pos += 4
        elif length == 2:
            yield "end", b"", pos + 4
            pos += 4
        else:
            yield "data", data[pos + 4:pos + length], pos + length
            pos += length


class GitRemote:
    """One remote, over HTTPS (or HTTP); `verify` is a CA bundle path or True."""

    def __init__(self, remote: str, *, credentials: list[Credential] | None = None, verify: Any = True,
                 timeout: float = 120.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        url = urlsplit(remote)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise GitError(f"git remote {remote!r}: only https:// remotes can be fetched by the agent "
                           "(ssh remotes need the git binary, which the agent image leaves out)")
        self.remote = remote.rstrip("/")
        cred = credential_for(remote, credentials or [])
        headers = {"User-Agent": f"git/launch-agent-{__version__}", "Git-Protocol": "version=2"}
        if cred is not None:
            token = base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        self._authenticated = cred is not None
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self._http = httpx.AsyncClient(headers=headers, verify=verify, timeout=httpx.Timeout(timeout),
                                       transport=transport, follow_redirects=True)
        self._capabilities: dict[str, str] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    def _status_error(self, status: int) -> GitError:
        if status in (401, 403):
            why = "the credentials for it were refused" if self._authenticated else "it needs credentials " \
                  "(chart value gitCreds) and none match this remote"
            return GitError(f"git remote {self.remote} answered HTTP {status}: {why}")
        if status == 404:
            return GitError(f"git remote {self.remote} answered HTTP 404: no such repository")
        return GitError(f"git remote {self.remote} answered HTTP {status}")

    async def capabilities(self) -> dict[str, str]:
        if self._capabilities is not None:
            return self._capabilities
        try:
            resp = await self._http.get(f"{self.remote}/info/refs", params={"service": "git-upload-pack"})
        except httpx.HTTPError as exc:
            raise GitError(f"git remote {self.remote} is unreachable ({type(exc).__name__}: {exc})") from None
        if resp.status_code != 200:
            raise self._status_error(resp.status_code)
        caps: dict[str, str] = {}
        version2 = False
        for kind, payload, _ in _pkt_lines(resp.content):
            if kind != "data":
                continue
            text = payload.decode(errors="replace").rstrip("\n")
            if text == "version 2":
                version2 = True
            elif version2:
                name, _, value = text.partition("=")
                caps[name] = value
        if not version2:
            raise GitError(f"git remote {self.remote} does not speak git protocol v2, which the agent needs to "
                           "fetch one commit")
        self._capabilities = caps
        return caps

    async def _command(self, lines: list[bytes]) -> bytes:
        caps = await self.capabilities()
        body = [_pkt("command=fetch\n"), _pkt(f"agent=launch-agent/{__version__}\n")]
        if "object-format" in caps:
            body.append(_pkt("object-format=sha1\n"))
        body += [b"0001", *lines, b"0000"]
        try:
            resp = await self._http.post(f"{self.remote}/git-upload-pack", content=b"".join(body), headers={
                "Content-Type": "application/x-git-upload-pack-request",
                "Accept": "application/x-git-upload-pack-result"})
        except httpx.HTTPError as exc:
            raise GitError(f"git remote {self.remote} is unreachable ({type(exc).__name__}: {exc})") from None
        if resp.status_code != 200:
            raise self._status_error(resp.status_code)
        return resp.content

    async def fetch_pack(self, commit: str, *, commit_only: bool = False) -> bytes:
        """The pack of `commit` and (unless `commit_only`) its whole tree, without history."""
        if not _SHA.match(commit):
            raise GitError(f"git commit {commit!r} is not a full 40-character commit id")
        lines = [_pkt(f"want {commit}\n"), _pkt("deepen 1\n"), _pkt("no-progress\n")]
        if commit_only:
            lines.append(_pkt("filter tree:0\n"))
        lines.append(_pkt("done\n"))
        raw = await self._command(lines)
        pack = bytearray()
        in_pack = False
        for kind, payload, _ in _pkt_lines(raw):
            if kind != "data":
                continue
            if payload.startswith(b"ERR "):
                message = payload[4:].decode(errors="replace").strip()
                if "not our ref" in message:
                    raise GitError(f"git commit {commit} is not in {self.remote}")
                raise GitError(f"git remote {self.remote}: {message}")
            if not in_pack:
                in_pack = payload.rstrip(b"\n") == b"packfile"
                continue
            band, data = payload[0], payload[1:]
            if band == 1:
                pack += data
            elif band == 3:
                message = data.decode(errors="replace").strip()
                if "not our ref" in message:
                    raise GitError(f"git commit {commit} is not in {self.remote}")
                raise GitError(f"git remote {self.remote}: {message}")
        if not pack:
            raise GitError(f"git remote {self.remote} sent no objects for commit {commit}")
        return bytes(pack)

    async def check(self, commit: str) -> None:
        """The remote answers and (where the server can filter) holds the commit; GitError otherwise."""
        caps = await self.capabilities()
        if "filter" in caps.get("fetch", "").split():
            objects = parse_pack(await self.fetch_pack(commit, commit_only=True))
            if commit not in objects:
                raise GitError(f"git commit {commit} is not in {self.remote}")


def _varint_size(data: bytes, pos: int) -> tuple[int, int]:
    shift, value = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _apply_delta(base: bytes, delta: bytes) -> bytes:
    src_size, pos = _varint_size(delta, 0)
    dst_size, pos = _varint_size(delta, pos)
    if src_size != len(base):
        raise GitError("the git server sent a corrupt pack (delta base size)")
    out = bytearray()
    while pos < len(delta):
        op = delta[pos]
        pos += 1
        if op & 0x80:
            offset = size = 0
            for i in range(4):
                if op & (1 << i):
                    offset |= delta[pos] << (8 * i)
                    pos += 1
            for i in range(3):
                if op & (0x10 << i):
                    size |= delta[pos] << (8 * i)
                    pos += 1
            out += base[offset:offset + (size or 0x10000)]
        elif op:
            out += delta[pos:pos + op]
            pos += op
        else:
            raise GitError("the git server sent a corrupt pack (delta opcode 0)")
    if len(out) != dst_size:
        raise GitError("the git server sent a corrupt pack (delta result size)")
    return bytes(out)


def _inflate(data: bytes, pos: int) -> tuple[bytes, int]:
    inflater = zlib.decompressobj()
    out = bytearray()
    while not inflater.eof:
        chunk = data[pos:pos + _CHUNK]
        if not chunk:
            raise GitError("the git server sent a truncated pack")
        out += inflater.decompress(chunk)
        pos += len(chunk) - len(inflater.unused_data)
    return bytes(out), pos


def parse_pack(pack: bytes) -> dict[str, tuple[str, bytes]]:
    """sha -> (type, content) of every object in a (non-thin) pack."""
    if pack[:4] != b"PACK" or int.from_bytes(pack[4:8], "big") not in (2, 3):
        raise GitError("the git server sent something that is not a pack")
    count = int.from_bytes(pack[8:12], "big")
    pos = 12
    by_offset: dict[int, tuple[str, bytes]] = {}
    by_sha: dict[str, tuple[str, bytes]] = {}
    for _ in range(count):
        start = pos
        byte = pack[pos]
        pos += 1
        kind, size, shift = (byte >> 4) & 7, byte & 0x0F, 4
        while byte & 0x80:
            byte = pack[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
        base: tuple[str, bytes] | None = None
        if kind == 6:
            byte = pack[pos]
            pos += 1
            offset = byte & 0x7F
            while byte & 0x80:
                byte = pack[pos]
                pos += 1
                offset = ((offset + 1) << 7) | (byte & 0x7F)
            base = by_offset.get(start - offset)
        elif kind == 7:
            base = by_sha.get(pack[pos:pos + 20].hex())
            pos += 20
        data, pos = _inflate(pack, pos)
        if kind in (6, 7):
            if base is None:
                raise GitError("the git server sent a pack whose delta base is missing")
            obj = (base[0], _apply_delta(base[1], data))
        elif kind in _TYPES:
            obj = (_TYPES[kind], data)
        else:
            raise GitError(f"the git server sent a pack with an unknown object type {kind}")
        sha = hashlib.sha1(f"{obj[0]} {len(obj[1])}\0".encode() + obj[1]).hexdigest()
        by_offset[start] = obj
        by_sha[sha] = obj
    return by_sha


def checkout(objects: dict[str, tuple[str, bytes]], commit: str, dest: Path, max_bytes: int) -> int:
    """Write the commit's tree under `dest`; the number of bytes written."""
    found = objects.get(commit)
    if found is None or found[0] != "commit":
        raise GitError(f"git commit {commit} is missing from what the server sent")
    header = found[1].split(b"\n", 1)[0].decode()
    if not header.startswith("tree "):
        raise GitError(f"git commit {commit} is malformed")
    written = 0

    def walk(tree_sha: str, target: Path) -> None:
        nonlocal written
        tree = objects.get(tree_sha)
        if tree is None or tree[0] != "tree":
            raise GitError(f"git tree {tree_sha} is missing from what the server sent")
        data, pos = tree[1], 0
        target.mkdir(parents=True, exist_ok=True)
        while pos < len(data):
            space = data.index(b" ", pos)
            nul = data.index(b"\0", space)
            mode, name = data[pos:space].decode(), data[space + 1:nul].decode()
            sha = data[nul + 1:nul + 21].hex()
            pos = nul + 21
            if name in ("", ".", "..", ".git") or "/" in name:
                raise GitError(f"git tree {tree_sha} has an entry the agent will not write: {name!r}")
            path = target / name
            if mode == "40000":
                walk(sha, path)
            elif mode == "160000":
                continue  # a submodule: not fetched
            else:
                blob = objects.get(sha)
                if blob is None or blob[0] != "blob":
                    raise GitError(f"git blob {sha} ({name}) is missing from what the server sent")
                written += len(blob[1])
                if written > max_bytes:
                    raise GitError(f"the source of commit {commit} is larger than the limit of {max_bytes} bytes")
                if mode == "120000":
                    os.symlink(blob[1].decode(), path)
                else:
                    path.write_bytes(blob[1])
                    path.chmod(0o777 if mode == "100755" else 0o666)

    walk(header[5:], dest)
    return written


def git_checker(credentials_file: str, verify: Any = True):  # type: ignore[no-untyped-def]
    """A check for the job resolver: the remote answers (with the agent's own git credentials)
    and, where the server can filter, holds the commit. Raises JobError with GitError's line."""
    from agent.backend.jobs.document import JobError
    from agent.jobspec import GitSource

    async def check(source: GitSource) -> None:
        path = Path(credentials_file) if credentials_file else None
        creds = read_credentials(path.read_text()) if path is not None and path.is_file() else []
        remote = GitRemote(source.remote, credentials=creds, verify=verify, timeout=30)
        try:
            await remote.check(source.commit)
        except GitError as exc:
            raise JobError(str(exc)) from None
        finally:
            await remote.aclose()

    return check
