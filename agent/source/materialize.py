"""`materialize`: one function that writes a job's source into a directory.

Code artifacts are downloaded the way the SDK downloads them (the manifest through
`FetchArtifactManifest` and its direct URL, the files' direct URLs through
`GetArtifactMembershipFileUrls`), every file checked against the manifest's MD5 and the size
limit, every path kept inside the directory. Git commits are fetched by `agent.source.git`, and
the job's `diff.patch` (when it has one) is applied on them (`agent.source.patch`).
Everything written is made writable by any user, like the official init container does, so the
job's container can write next to its code whatever user it runs as.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from agent.backend.jobs.document import JobError
from agent.backend.jobs.files import DirectUrls, file_urls
from agent.backend.jobs.operations import Q_FETCH_MANIFEST
from agent.backend.transport import BackendError, GraphQLClient
from agent.jobspec import DIFF_PATCH, JOB_FILES_DIR, ArtifactRef, GitSource
from agent.source.git import Credential, GitError, GitRemote, checkout, parse_pack
from agent.source.patch import PatchError, apply_patch

_QUALIFIED = re.compile(r"^([\w.-]+)/([\w.-]+)/([\w.-]+):v(\d+)$")
MANIFEST_LIMIT = 64 << 20


class SourceError(Exception):
    """The source cannot be materialized: one line a person can act on."""


def parse_artifact_ref(name: str, artifact_id: str) -> ArtifactRef:
    """``entity/project/collection:v<N>`` and its id -> an ArtifactRef."""
    found = _QUALIFIED.match(name)
    if not found or not artifact_id:
        raise SourceError(f"artifact {name!r}: give it as entity/project/name:v<N> with its id")
    return ArtifactRef(id=artifact_id, entity=found[1], project=found[2], collection=found[3],
                       version=int(found[4]), digest="")


def _inside(root: Path, rel: str) -> Path:
    path = (root / rel).resolve()
    if rel.startswith("/") or (path != root and root not in path.parents):
        raise SourceError(f"artifact file {rel!r} would be written outside {root}")
    return path


async def _artifact_files(client: GraphQLClient, downloads: DirectUrls, ref: ArtifactRef, dest: Path,
                          max_bytes: int) -> int:
    try:
        data = await client.execute("FetchArtifactManifest", Q_FETCH_MANIFEST, {"id": ref.id})
    except BackendError as exc:
        raise SourceError(f"cannot read the manifest of {ref.qualified_name}: {exc}") from None
    manifest_url = (((data.get("artifact") or {}).get("currentManifest") or {}).get("file") or {}).get("directUrl")
    if not manifest_url:
        raise SourceError(f"artifact {ref.qualified_name} (id {ref.id}) does not exist or has no manifest")
    try:
        manifest = json.loads(await downloads.get(manifest_url, MANIFEST_LIMIT, f"manifest of {ref.qualified_name}"))
        contents: dict[str, Any] = manifest["contents"]
    except (ValueError, KeyError, TypeError):
        raise SourceError(f"the manifest of {ref.qualified_name} is not valid") from None
    total = sum(int((e or {}).get("size") or 0) for e in contents.values())
    if total > max_bytes:
        raise SourceError(f"artifact {ref.qualified_name} is {total} bytes, over the limit of {max_bytes}")
    urls = await file_urls(client, ref)
    root = dest.resolve()
    written = 0
    for rel, entry in sorted(contents.items()):
        if (entry or {}).get("ref"):
            raise SourceError(f"artifact {ref.qualified_name}: {rel} is a reference to outside storage, which "
                              "the agent does not fetch")
        if rel not in urls:
            raise SourceError(f"artifact {ref.qualified_name}: no download URL for {rel}")
        path = _inside(root, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        written += await downloads.stream_to(urls[rel], path, max_bytes - written, f"{ref.qualified_name}/{rel}")
        digest = base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()
        if entry.get("digest") and digest != entry["digest"]:
            raise SourceError(f"artifact {ref.qualified_name}: {rel} does not match its digest in the manifest")
    return written


async def _git_tree(git: GitSource, dest: Path, max_bytes: int, credentials: list[Credential], verify: Any) -> int:
    remote = GitRemote(git.remote, credentials=credentials, verify=verify)
    try:
        objects = parse_pack(await remote.fetch_pack(git.commit))
        return checkout(objects, git.commit, dest, max_bytes)
    finally:
        await remote.aclose()


def _open_up(path: Path, bits: int) -> None:
    """Add `bits` to the mode of `path`. A path another user owns (the root of the volume, which
    the kubelet made, when the fetcher runs as non-root) is left as it is: only its owner could."""
    mode = path.stat().st_mode & 0o7777
    if mode | bits == mode:
        return
    try:
        path.chmod(mode | bits)
    except PermissionError:
        if path.stat().st_uid == os.geteuid():
            raise


def _make_writable(root: Path) -> None:
    for base, dirs, files in os.walk(root):
        for name in dirs:
            _open_up(Path(base) / name, 0o777)
        for name in files:
            path = Path(base) / name
            if not path.is_symlink():
                _open_up(path, 0o666)
    _open_up(root, 0o777)


async def materialize(dest: Path, *, client: GraphQLClient, downloads: DirectUrls, code: ArtifactRef | None = None,
                      git: GitSource | None = None, job: ArtifactRef | None = None, max_bytes: int = 1 << 30,
                      credentials: list[Credential] | None = None, verify: Any = True) -> int:
    """Write the source (a code artifact or a git commit) under `dest`, and the job artifact's files
    under `dest/.job` when `job` is given; the number of bytes written. SourceError on failure."""
    if (code is None) == (git is None):
        raise SourceError("give exactly one source: a code artifact or a git remote and commit")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if code is not None:
            written = await _artifact_files(client, downloads, code, dest, max_bytes)
        else:
            assert git is not None
            written = await _git_tree(git, dest, max_bytes, credentials or [], verify)
        if job is not None:
            written += await _artifact_files(client, downloads, job, dest / JOB_FILES_DIR, max_bytes)
        patch = dest / JOB_FILES_DIR / DIFF_PATCH
        if git is not None and patch.is_file():  # the run's uncommitted changes, as the official agent applies them
            apply_patch(dest, patch.read_bytes())
    except (GitError, JobError, PatchError) as exc:
        raise SourceError(str(exc)) from None
    _make_writable(dest)
    return written
