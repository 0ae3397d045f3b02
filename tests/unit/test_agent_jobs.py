"""Job resolution (agent.backend.jobs) against the emulator, with wandb-job.json documents made
by the installed W&B SDK's job builder: each source type, the cache (200 runs of one job resolve it
once), and every bad input as one JobError line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.backend.jobs import DirectUrls, JobError, JobResolver, prepare_job
from agent.backend.transport import GraphQLClient
from localenv.wandb_emulator import start_emulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from job_documents import job_document

ENTITY, PROJECT = "acme", "train"


@pytest.fixture
def emu():
    server, key = start_emulator(entity=ENTITY, username=ENTITY)
    try:
        yield server.url, key
    finally:
        server.stop()


def seed(url: str, name: str, files: dict[str, Any], type_name: str = "job", aliases: list[str] | None = None) -> dict:
    body = {"entity": ENTITY, "project": PROJECT, "type": type_name, "name": name, "aliases": aliases or [],
            "files": {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in files.items()}}
    resp = httpx.post(url + "/_emulator/artifacts", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def counts(url: str) -> dict[str, int]:
    return httpx.get(url + "/_emulator/counts", timeout=10).json()


def run(url: str, key: str, coro_fn, **kwargs):
    async def main():
        client = GraphQLClient(url, key, timeout=5, attempts=1)
        downloads = DirectUrls(timeout=5)
        resolver = JobResolver(client, downloads, **kwargs)
        try:
            return await coro_fn(resolver)
        finally:
            await client.aclose()
            await downloads.aclose()
    return asyncio.run(main())


def seed_code_job(url: str, size_text: str = "print('hi')\n") -> dict:
    code = seed(url, "code-train.py", {"train.py": size_text, "requirements.txt": "wandb\n"}, type_name="code")
    docs = job_document("artifact", code_artifact_id=code["id"], code_artifact_name="code-train.py:v0")
    seed(url, "code-job", docs)
    return code


def test_each_source_type_resolves(emu):
    url, key = emu
    seed(url, "image-job", job_document("image", image="busybox:1.36"))
    code = seed_code_job(url)
    seed(url, "git-job", job_document("repo", remote="https://git.example/r.git", commit="a" * 40, runtime="3.10"))

    async def go(r: JobResolver):
        return [await r.resolve(f"{ENTITY}/{PROJECT}/{n}:latest") for n in ("image-job", "code-job", "git-job")]

    image, code_job, git = run(url, key, go)
    assert (image.source_type, image.image, image.entrypoint) == ("image", "busybox:1.36", ())
    assert image.job.qualified_name == f"{ENTITY}/{PROJECT}/image-job:v0" and image.image_source == "image-job:v0"
    assert code_job.source_type == "artifact" and code_job.code is not None
    assert (code_job.code.id, code_job.code.qualified_name) == (code["id"], f"{ENTITY}/{PROJECT}/code-train.py:v0")
    assert code_job.code.size == len("print('hi')\n") + len("wandb\n") and code_job.code.file_count == 2
    assert code_job.entrypoint == ("python", "train.py") and code_job.has_requirements
    assert git.git is not None and (git.git.remote, git.git.commit) == ("https://git.example/r.git", "a" * 40)
    assert git.runtime == "3.10"


def test_two_hundred_runs_of_one_job_resolve_it_once(emu):
    url, key = emu
    seed_code_job(url)
    before = counts(url)

    async def go(r: JobResolver):
        for _ in range(200):
            await r.resolve(f"{ENTITY}/{PROJECT}/code-job:latest")
        for _ in range(200):
            await r.resolve(f"{ENTITY}/{PROJECT}/code-job:v0")
        return r.stats

    stats = run(url, key, go)
    after = counts(url)
    sent = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert (stats.resolved, stats.hits) == (400, 399)
    # latest can move: one membership lookup per run; v0 never moves: one lookup in all.
    assert sent.get("ArtifactMembershipByName") == 201
    assert sent.get("GetArtifactMembershipFileUrls") == 1 and sent.get("ArtifactByID") == 1
    assert sent.get("artifact_download") == 1


def test_runs_of_one_job_popped_together_resolve_it_once(emu):
    url, key = emu
    seed(url, "image-job", job_document("image", image="busybox:1.36"))
    before = counts(url)

    async def go(r: JobResolver):
        got = await asyncio.gather(*(r.resolve(f"{ENTITY}/{PROJECT}/image-job:v0") for _ in range(50)))
        again = await r.resolve(f"{ENTITY}/{PROJECT}/image-job:v0")  # after: from the cache
        return got, again, r.stats

    got, again, stats = run(url, key, go)
    after = counts(url)
    sent = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert {j.image for j in got} == {"busybox:1.36"} and again.image == "busybox:1.36"
    assert (stats.resolved, stats.hits) == (51, 50)
    assert sent.get("ArtifactMembershipByName") == 1 and sent.get("artifact_download") == 1


def test_a_new_version_of_latest_is_resolved_again(emu):
    url, key = emu
    seed(url, "image-job", job_document("image", image="busybox:1.36"))

    async def go(r: JobResolver):
        first = await r.resolve(f"{ENTITY}/{PROJECT}/image-job:latest")
        seed(url, "image-job", job_document("image", image="busybox:1.37"))
        return first, await r.resolve(f"{ENTITY}/{PROJECT}/image-job:latest")

    first, second = run(url, key, go)
    assert (first.image, second.image, second.job.version) == ("busybox:1.36", "busybox:1.37", 1)


@pytest.mark.parametrize(("name", "setup", "message"), [
    ("acme/train/missing:latest", None, "job acme/train/missing:latest not found: no artifact missing"),
    ("acme/nowhere/x:latest", None, "project acme/nowhere does not exist"),
    ("acme/train/image-job:prod", "image", "has no version 'prod'"),
    ("acme/train/code-train.py:latest", "code", "is an artifact of type 'code', not a job"),
    ("acme/train/bad:latest", "malformed", "wandb-job.json is not valid JSON"),
    ("acme/train/bad:latest", "unknown-type", "has source_type 'notebook-server'"),
    ("acme/train/bad:latest", "no-image", "needs source.image"),
    ("acme/train/bad:latest", "no-document", "has no wandb-job.json"),
    ("acme/train/code-job:latest", "too-big", "over the limit of 100"),
    ("not a name", None, "is not a job name"),
])
def test_bad_jobs_are_one_clear_line(emu, name, setup, message):
    url, key = emu
    seed(url, "unrelated", job_document("image"))
    if setup == "image":
        seed(url, "image-job", job_document("image"))
    elif setup in ("code", "too-big"):
        seed_code_job(url, "x" * 200)
    elif setup == "malformed":
        seed(url, "bad", {"wandb-job.json": "{not json"})
    elif setup == "unknown-type":
        doc = job_document("image")
        doc["wandb-job.json"]["source_type"] = "notebook-server"  # type: ignore[index]
        seed(url, "bad", doc)
    elif setup == "no-image":
        doc = job_document("image")
        doc["wandb-job.json"]["source"] = {}  # type: ignore[index]
        seed(url, "bad", doc)
    elif setup == "no-document":
        seed(url, "bad", {"requirements.frozen.txt": "wandb\n"})

    async def go(r: JobResolver):
        return await r.resolve(name)

    with pytest.raises(JobError) as err:
        run(url, key, go, max_code_bytes=100)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_code_jobs_need_a_builder_that_runs_here(emu):
    url, key = emu
    seed_code_job(url)
    spec = {"entity": ENTITY, "project": PROJECT, "job": f"{ENTITY}/{PROJECT}/code-job:latest"}

    async def go(r: JobResolver, builder: str):
        return await prepare_job(spec, r, builder=builder)

    with pytest.raises(JobError, match="'docker' cannot"):
        run(url, key, lambda r: go(r, "docker"))
    assert run(url, key, lambda r: go(r, "kaniko")).has_code  # the build step builds it


def test_a_prebuilt_image_wins_over_the_job_and_needs_no_resolution(emu):
    url, key = emu
    spec = {"entity": ENTITY, "project": PROJECT, "job": "acme/train/absent:latest",
            "docker": {"docker_image": "busybox"}}

    async def go(r: JobResolver):
        return await prepare_job(spec, r, builder="noop")

    assert run(url, key, go) is None
    assert "ArtifactMembershipByName" not in counts(url)
