"""`JobResolver`: ``entity/project/name:alias`` -> `ResolvedJob`, cached by artifact id and digest.

Per job version it costs, the first time: `ArtifactMembershipByName` (alias -> version),
`GetArtifactMembershipFileUrls` and one GET of `wandb-job.json`, plus `ArtifactByID` for the code
artifact of a code job (its size is checked against the limit here, before anything is created)
and the git check of a git job. After that a moving alias (``latest``) costs one
`ArtifactMembershipByName`, and ``v<N>`` (which never moves) nothing. Runs that ask for the same
name while it is being resolved wait for that resolution instead of sending their own (a burst
of runs of one job resolves it once).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agent.backend.jobs.document import (
    JobError,
    JobName,
    parse_artifact_reference,
    parse_job_document,
    parse_job_name,
)
from agent.backend.jobs.files import DirectUrls, file_urls
from agent.backend.jobs.operations import Q_ARTIFACT_BY_ID, Q_MEMBERSHIP_BY_NAME
from agent.backend.transport import BackendError, GraphQLClient
from agent.jobspec import ArtifactRef, GitSource, ResolvedJob

JOB_DOCUMENT = "wandb-job.json"
DOCUMENT_LIMIT = 1 << 20
DEFAULT_CODE_LIMIT = 1 << 30
CACHE_SIZE = 256

GitCheck = Callable[[GitSource], Awaitable[None]]


@dataclass
class ResolverStats:
    resolved: int = 0  # calls that returned a job
    hits: int = 0  # of those, served from the cache (the W&B requests are counted by the transport)


class JobResolver:
    def __init__(self, client: GraphQLClient, downloads: DirectUrls, *, max_code_bytes: int = DEFAULT_CODE_LIMIT,
                 git_check: GitCheck | None = None) -> None:
        self._client = client
        self._downloads = downloads
        self.max_code_bytes = max_code_bytes
        self._git_check = git_check
        self._by_version: OrderedDict[tuple[str, str], ResolvedJob] = OrderedDict()
        self._by_fixed_name: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._checked_git: set[GitSource] = set()
        self._resolving: dict[str, asyncio.Future[ResolvedJob]] = {}
        self.stats = ResolverStats()

    async def _query(self, name: str, query: str, variables: dict[str, Any], what: str) -> dict[str, Any]:
        try:
            return await self._client.execute(name, query, variables)
        except BackendError as exc:
            if exc.retryable:
                raise
            raise JobError(f"{what}: {exc}") from None

    @staticmethod
    def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)

    async def resolve(self, job: Any, entity: str = "", project: str = "") -> ResolvedJob:
        """The job named in a run spec; JobError (a message for the item) when it cannot launch.
        A BackendError that may pass on retry propagates (the item is not failed for it)."""
        name = parse_job_name(job, entity, project)
        running = self._resolving.get(name.full)
        if running is not None:  # the same name, being resolved for another run right now
            found = await asyncio.shield(running)
            self.stats.hits += 1
            self.stats.resolved += 1
            return found
        task = asyncio.ensure_future(self._resolve(name))
        self._resolving[name.full] = task
        task.add_done_callback(lambda t: self._done(name.full, t))
        # Shielded: a caller that is cancelled (shutdown of its item) leaves the others their answer.
        return await asyncio.shield(task)

    def _done(self, name: str, task: asyncio.Future[ResolvedJob]) -> None:
        if self._resolving.get(name) is task:
            del self._resolving[name]
        if not task.cancelled():
            task.exception()  # retrieved here too: every waiter may have been cancelled

    async def _resolve(self, name: JobName) -> ResolvedJob:
        key = self._by_fixed_name.get(name.full) if name.immutable else None
        found = self._by_version.get(key) if key is not None else None
        version: tuple[dict[str, Any], dict[str, Any]] | None = None
        if found is None:
            key, *version = await self._version_of(name)  # type: ignore[assignment]
            if name.immutable:
                self._remember(self._by_fixed_name, name.full, key)
            found = self._by_version.get(key)
        if found is not None:
            self._by_version.move_to_end(key)
            self.stats.hits += 1
            self.stats.resolved += 1
            return found
        assert version is not None and key is not None
        resolved = await self._resolve_version(name, key[0], *version)
        self._remember(self._by_version, key, resolved)
        self.stats.resolved += 1
        return resolved

    async def _membership(self, name: JobName, alias: str) -> dict[str, Any] | None:
        data = await self._query("ArtifactMembershipByName", Q_MEMBERSHIP_BY_NAME, {
            "entity": name.entity, "project": name.project, "name": f"{name.collection}:{alias}"},
            f"cannot look up job {name.full}")
        project = data.get("project")
        if project is None:
            raise JobError(f"job {name.full} not found: project {name.entity}/{name.project} does not exist "
                           "or this API key cannot read it")
        membership = project.get("artifactCollectionMembership")
        return membership if isinstance(membership, dict) else None

    async def _version_of(self, name: JobName) -> tuple[tuple[str, str], dict[str, Any], dict[str, Any]]:
        """(artifact id, digest), the membership and the artifact a name points at now."""
        membership = await self._membership(name, name.alias)
        if membership is None:
            if name.alias != "latest" and await self._membership(name, "latest") is not None:
                raise JobError(f"job {name.entity}/{name.project}/{name.collection} has no version {name.alias!r}")
            raise JobError(f"job {name.full} not found: no artifact {name.collection} in "
                           f"{name.entity}/{name.project}")
        artifact = membership.get("artifact") or {}
        kind = (artifact.get("artifactType") or {}).get("name")
        if kind != "job":
            raise JobError(f"{name.full} is an artifact of type {kind!r}, not a job")
        if artifact.get("state") not in (None, "COMMITTED"):
            raise JobError(f"job {name.full} is not committed (state {artifact.get('state')})")
        return (str(artifact["id"]), str(artifact.get("digest") or "")), membership, artifact

    async def _resolve_version(self, name: JobName, artifact_id: str, membership: dict[str, Any],
                               artifact: dict[str, Any]) -> ResolvedJob:
        collection = (membership.get("artifactCollection") or {}).get("name") or name.collection
        ref = ArtifactRef(id=artifact_id, entity=name.entity, project=name.project, collection=str(collection),
                          version=int(membership.get("versionIndex") or artifact.get("versionIndex") or 0),
                          digest=str(artifact.get("digest") or ""), size=int(artifact.get("size") or 0),
                          file_count=int(artifact.get("fileCount") or 0))
        urls = await file_urls(self._client, ref)
        if JOB_DOCUMENT not in urls:
            raise JobError(f"job {name.full} has no {JOB_DOCUMENT} (files: {', '.join(sorted(urls)) or 'none'})")
        raw = await self._downloads.get(urls[JOB_DOCUMENT], DOCUMENT_LIMIT, f"{JOB_DOCUMENT} of job {name.full}")
        doc = parse_job_document(raw, name.full)
        code = await self._code_artifact(doc.code, name) if doc.source_type == "artifact" and doc.code else None
        if doc.git is not None and self._git_check is not None and doc.git not in self._checked_git:
            await self._git_check(doc.git)
            self._checked_git.add(doc.git)
        return ResolvedJob(name=str(name.full), job=ref, source_type=doc.source_type, image=doc.image, code=code,
                           git=doc.git, entrypoint=doc.entrypoint, runtime=doc.runtime, base_image=doc.base_image,
                           dockerfile=doc.dockerfile, build_context=doc.build_context, notebook=doc.notebook,
                           job_files=tuple(sorted(urls)))

    async def _code_artifact(self, reference: str, name: JobName) -> ArtifactRef:
        target, by_id = parse_artifact_reference(reference, name.full)
        if by_id:
            data = await self._query("ArtifactByID", Q_ARTIFACT_BY_ID, {"id": target},
                                     f"job {name.full}: cannot look up its code artifact")
            artifact = data.get("artifact")
            if not artifact:
                raise JobError(f"job {name.full}: its code artifact {target} does not exist")
            seq = artifact.get("artifactSequence") or {}
            project = seq.get("project") or {}
            entity, project_name = (project.get("entity") or {}).get("name"), project.get("name")
            collection, version = seq.get("name"), artifact.get("versionIndex")
        else:
            code_name = parse_job_name(target)
            membership = await self._membership(code_name, code_name.alias)
            if membership is None:
                raise JobError(f"job {name.full}: its code artifact {target} does not exist")
            artifact = membership.get("artifact") or {}
            entity, project_name, collection = code_name.entity, code_name.project, code_name.collection
            version = membership.get("versionIndex")
        if artifact.get("state") == "DELETED":
            raise JobError(f"job {name.full}: its code artifact {target} was deleted")
        if artifact.get("state") not in (None, "COMMITTED"):
            raise JobError(f"job {name.full}: its code artifact {target} is not committed")
        ref = ArtifactRef(id=str(artifact.get("id") or target), entity=str(entity), project=str(project_name),
                          collection=str(collection), version=int(version or 0),
                          digest=str(artifact.get("digest") or ""), size=int(artifact.get("size") or 0),
                          file_count=int(artifact.get("fileCount") or 0))
        if ref.size > self.max_code_bytes:
            raise JobError(f"job {name.full}: its code artifact {ref.qualified_name} is {ref.size} bytes, over the "
                           f"limit of {self.max_code_bytes} (LAUNCH_AGENT_MAX_CODE_BYTES)")
        return ref
