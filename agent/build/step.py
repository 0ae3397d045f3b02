"""The build step of the launch pipeline (a durable ``agent.controller.prepare`` Preparer): a code or
git job without a base image gets an image built by Kaniko, and the run launches on it.

Durable: the pipeline writes the item's launch record and acks the item before this runs; the
step saves the build Job's name and the image on the record, so a restarted agent joins the same
build instead of starting one. Running it twice is harmless: the image tag is derived from the
job version and its Dockerfile, an image already in the registry is never rebuilt, and the build
Job is named after the image.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from agent.build import status
from agent.build.builder import Builder
from agent.build.source import BuildError, BuildSource
from agent.jobspec import FROZEN_REQUIREMENTS, JOB_FILES_DIR, ResolvedJob
from agent.kube.client import JOBS

Fetch = Callable[[ResolvedJob, Path], Awaitable[None]]  # writes the job's source into a directory


def build_source(job: ResolvedJob, directory: Path, spec: Mapping[str, Any]) -> BuildSource:
    """What to build for *job*, whose source is in *directory* (the job's files under ``.job``)."""
    frozen = directory / JOB_FILES_DIR / FROZEN_REQUIREMENTS
    if frozen.is_file() and not (directory / FROZEN_REQUIREMENTS).exists():
        shutil.copyfile(frozen, directory / FROZEN_REQUIREMENTS)  # where the official agent puts it
    overrides = spec.get("overrides") if isinstance(spec.get("overrides"), Mapping) else {}
    entry = overrides.get("entry_point") if isinstance(overrides, Mapping) else None
    builder = spec.get("builder") if isinstance(spec.get("builder"), Mapping) else {}
    accelerator = (builder.get("accelerator") or {}) if isinstance(builder, Mapping) else {}
    docker = spec.get("docker") if isinstance(spec.get("docker"), Mapping) else {}
    return BuildSource(
        source_string=job.image_source,
        directory=directory,
        entrypoint=tuple(str(a) for a in entry) if isinstance(entry, list) and entry else job.entrypoint,
        python_version=job.runtime or "",
        dockerfile=job.dockerfile or "",
        build_context=job.build_context or "",
        override_dockerfile=str(overrides.get("dockerfile") or "") if isinstance(overrides, Mapping) else "",
        accelerator_base_image=str(accelerator.get("base_image") or "") if isinstance(accelerator, Mapping) else "",
        user_id=int(docker.get("user_id") or 1000) if isinstance(docker, Mapping) else 1000,
    )


class BuildStep:
    name = "build"
    durable = True
    concurrency = 4

    def __init__(self, builder: Builder, fetch: Fetch, workdir: Path, log: logging.Logger) -> None:
        self.builder = builder
        self.fetch = fetch
        self.workdir = workdir
        self.log = log

    def wants(self, spec: Mapping[str, Any]) -> bool:
        from agent.backend.jobs.prepare import names_a_job

        return names_a_job(spec)

    async def prepare(self, ctx: Any) -> dict[str, Any]:
        from agent.controller.prepare import PrepareError

        job: ResolvedJob | None = ctx.job
        spec = dict(ctx.spec)
        if job is None or not job.has_code or job.base_image:
            return spec
        try:
            image = await self._image(ctx, job)
        except BuildError as exc:
            raise PrepareError(exc.stage, exc.message) from None
        ctx.job = None  # the code is in the image: no code mount
        spec["docker"] = {**(spec.get("docker") if isinstance(spec.get("docker"), Mapping) else {}),
                          "docker_image": image}
        return spec

    async def _image(self, ctx: Any, job: ResolvedJob) -> str:
        name, image = str(ctx.progress.get("build") or ""), str(ctx.progress.get("image") or "")
        for _ in range(3):  # a build Job deleted under us (by another run of the same image): look again
            if not (name and await self.builder.kube.get(JOBS, self.builder.namespace, name)):
                self.workdir.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=self.workdir, prefix="source-") as tmp:
                    await self.fetch(job, Path(tmp))
                    prepared = await self.builder.prepare(build_source(job, Path(tmp), ctx.spec))
                if prepared.ready:
                    return prepared.image_uri
                name, image = prepared.job, prepared.image_uri
                await ctx.save(build=name, image=image)
            finished = await self.builder.wait(name)
            if finished is None:
                name = ""
                continue
            state, message, packages = await self.builder.outcome(finished)
            await self.builder.finish(name)
            if state.state == status.FAILED:
                raise BuildError(message, stage="build")
            if packages:
                text = status.packages_warning(image, packages)
                try:
                    await ctx.backend.warn(ctx.item.item_id, text, "build")
                except Exception as exc:  # a warning that does not arrive fails nothing
                    self.log.warning("item %s: %s (sending the warning failed: %s)", ctx.item.item_id, text, exc)
            return image
        raise BuildError(f"the build Job of {image} kept disappearing before it finished", stage="build")


def source_fetcher(client: Any, downloads: Any, credentials: list[Any], verify: Any = True) -> Fetch:
    """A Fetch over ``agent.source.materialize`` with the agent's W&B client and git credentials."""
    from agent.source.materialize import SourceError, materialize

    async def fetch(job: ResolvedJob, dest: Path) -> None:
        try:
            await materialize(dest, client=client, downloads=downloads, code=job.code, git=job.git, job=job.job,
                              credentials=credentials, verify=verify)
        except SourceError as exc:
            raise BuildError(f"fetching the source of {job.name} failed: {exc}", stage="build") from None

    return fetch


def build_step(settings: Any, kube: Any, client: Any, downloads: Any, log: logging.Logger) -> tuple[Any, BuildStep]:
    """The build step of an agent whose builder is kaniko, and the HTTP client it owns (close it)."""
    import os

    import httpx2 as httpx

    from agent.build.stores import Clouds
    from agent.source.git import read_credentials

    http = httpx.AsyncClient(timeout=httpx.Timeout(60.0, read=600.0))
    workdir = Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "launch-agent-builds"
    builder = Builder(settings.kaniko, settings.manifest_settings(), kube, Clouds.create(http), workdir / "contexts",
                      log, fetch_image=settings.agent_image)
    creds_file = Path(settings.git_credentials_file) if settings.git_credentials_file else None
    creds = read_credentials(creds_file.read_text()) if creds_file and creds_file.is_file() else []
    fetch = source_fetcher(client, downloads, creds, settings.git_ca_file or True)
    return http, BuildStep(builder, fetch, workdir / "sources", log)
