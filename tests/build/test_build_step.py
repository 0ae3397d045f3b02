"""The build step's orchestration on the real API server (kwok plays the build pod): it waits by
watching, rejoins the build Job recorded on the launch record after a restart without fetching
the source again, fails with stage ``build`` and the Job's reason, cleans up with the Job, and
notices a build Job deleted under it."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from agent.build.builder import Builder
from agent.build.settings import kaniko_settings
from agent.build.source import BuildError
from agent.build.step import BuildStep, build_source
from agent.build.stores import Clouds
from agent.jobspec import ArtifactRef, ResolvedJob
from agent.kube.client import JOBS, Kube
from agent.manifest import ManifestSettings
from localenv.buildservers import servers
from localenv.pytest_plugin import Kube as LocalKube

pytestmark = [pytest.mark.cluster, pytest.mark.buildservers]
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
LOG = logging.getLogger("test.build-step")
JOB = ResolvedJob(name="e/p/hello:latest", source_type="artifact", entrypoint=("python", "train.py"), runtime="3.11",
                  job=ArtifactRef(id="QXJ0aWZhY3Q6MQ==", entity="e", project="p", collection="hello", version=4,
                                  digest="d"),
                  code=ArtifactRef(id="QXJ0aWZhY3Q6Mg==", entity="e", project="p", collection="code", version=1,
                                   digest="c"))


@dataclass
class Item:
    item_id: str = "UnVuUXVldWVJdGVtOjE="
    queue: str = "q"


@dataclass
class Ctx:
    """The attributes of the pipeline's PrepareContext the step uses."""

    spec: dict[str, Any]
    job: Any
    backend: Any = None
    item: Item = field(default_factory=Item)
    progress: dict[str, Any] = field(default_factory=dict)
    saved: list[dict[str, Any]] = field(default_factory=list)

    async def save(self, **progress: Any) -> None:
        self.progress.update(progress)
        self.saved.append(dict(progress))


@pytest.fixture
def setup(kube: LocalKube, namespace: Any, buildservers: servers.BuildServers, tmp_path: Path) -> dict[str, Any]:
    import boto3

    ns = namespace("step")
    boto3.client("s3", endpoint_url=buildservers["s3"].url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=ns)
    return {"kube": kube, "ns": ns, "servers": buildservers, "tmp": tmp_path, "bucket": ns}


async def _fetch(job: ResolvedJob, dest: Path) -> None:
    (dest / "train.py").write_text("print('hi')\n")


def _config(s: dict[str, Any], outcome: str) -> dict[str, Any]:
    registry = s["servers"]["registry"].url.removeprefix("http://")
    return {"environment": {"type": "aws", "region": "us-east-1"},
            "builder": {"type": "kaniko", "build-context-store": f"s3://{s['bucket']}/ctx",
                        "destination": f"{registry}/step/app",
                        "kaniko-config": {"spec": {"template": {
                            "metadata": {"annotations": {"localenv.launch-agent.dev/outcome": outcome}},
                            "spec": {"containers": [{"args": ["--insecure=true"]}]}}}}}}


async def _run(s: dict[str, Any], outcome: str, fn: Any) -> Any:
    env = {**AWS, "AWS_ENDPOINT_URL_S3": s["servers"]["s3"].url}
    settings = kaniko_settings(_config(s, outcome), env)
    assert settings is not None
    kube = Kube.connect(str(s["kube"].kubeconfig))
    async with httpx2.AsyncClient(timeout=30.0) as http:
        builder = Builder(settings, ManifestSettings(agent_namespace=s["ns"], agent_identity="rel"), kube,
                          Clouds.create(http, env), s["tmp"] / "ctx", LOG)
        try:
            return await fn(builder, BuildStep(builder, _fetch, s["tmp"] / "src", LOG))
        finally:
            await kube.aclose()


def test_a_finished_build_gives_the_image_and_is_cleaned_up(setup: dict[str, Any]) -> None:
    async def scenario(builder: Builder, step: BuildStep) -> tuple[str, Ctx, Any]:
        ctx = Ctx(spec={"job": JOB.name}, job=JOB)
        image = await asyncio.wait_for(step._image(ctx, JOB), 300)
        name = ctx.saved[0]["build"]
        gone = await builder.kube.get(JOBS, builder.namespace, name)
        return image, ctx, gone

    image, ctx, gone = asyncio.run(_run(setup, "succeed", scenario))
    registry = setup["servers"]["registry"].url.removeprefix("http://")
    assert re.fullmatch(re.escape(f"{registry}/step/app:") + "[0-9a-f]{8}", image)
    assert ctx.saved == [{"build": ctx.progress["build"], "image": image}]
    assert gone is None or gone["metadata"].get("deletionTimestamp")


def test_a_restarted_agent_rejoins_the_recorded_build_without_fetching(setup: dict[str, Any]) -> None:
    async def no_fetch(job: ResolvedJob, dest: Path) -> None:
        raise AssertionError("the source was fetched again")

    async def scenario(builder: Builder, step: BuildStep) -> tuple[str, str]:
        source_dir = setup["tmp"] / "first"
        source_dir.mkdir()
        await _fetch(JOB, source_dir)
        prepared = await builder.prepare(build_source(JOB, source_dir, {}))
        resumed = BuildStep(builder, no_fetch, setup["tmp"] / "src2", LOG)
        ctx = Ctx(spec={"job": JOB.name}, job=JOB, progress={"build": prepared.job, "image": prepared.image_uri})
        return await asyncio.wait_for(resumed._image(ctx, JOB), 300), prepared.image_uri

    got, expected = asyncio.run(_run(setup, "succeed", scenario))
    assert got == expected


def test_a_failed_build_fails_at_stage_build(setup: dict[str, Any]) -> None:
    async def scenario(builder: Builder, step: BuildStep) -> BuildError:
        try:
            await asyncio.wait_for(step._image(Ctx(spec={"job": JOB.name}, job=JOB), JOB), 300)
        except BuildError as exc:
            return exc
        raise AssertionError("the build did not fail")

    err = asyncio.run(_run(setup, "fail", scenario))
    assert err.stage == "build" and err.message.startswith("building ") and "failed (" in err.message


def test_waiting_notices_a_deleted_build_job(setup: dict[str, Any]) -> None:
    async def scenario(builder: Builder, step: BuildStep) -> Any:
        source_dir = setup["tmp"] / "del"
        source_dir.mkdir()
        await _fetch(JOB, source_dir)
        prepared = await builder.prepare(build_source(JOB, source_dir, {}))
        waiter = asyncio.create_task(builder.wait(prepared.job, timeout=120))
        await asyncio.sleep(1.0)
        await builder.finish(prepared.job)
        return await waiter

    assert asyncio.run(_run(setup, "keep-running", scenario)) is None
