"""The job part of preparing a run: a popped run spec -> its resolved job (or None), checked
against the builder the agent runs. One call for the launch pipeline's prepare stage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agent.backend.jobs.document import JobError
from agent.backend.jobs.resolver import JobResolver
from agent.backend.transport import BackendError
from agent.jobspec import ResolvedJob

Materialize = Callable[[ResolvedJob], Awaitable[None]]


def builder_type(agent_config: Mapping[str, Any]) -> str:
    builder = agent_config.get("builder") or {}
    kind = builder.get("type") if isinstance(builder, Mapping) else None
    return str(kind or "noop")


def names_a_job(run_spec: Mapping[str, Any]) -> bool:
    """Like the official agent: a prebuilt image (docker.docker_image, image_uri) wins over a job."""
    docker = run_spec.get("docker") or {}
    image = (docker.get("docker_image") if isinstance(docker, Mapping) else None) or run_spec.get("image_uri")
    return bool(run_spec.get("job")) and not image


async def prepare_job(run_spec: Mapping[str, Any], resolver: JobResolver, *, builder: str,
                      materialize: Materialize | None = None) -> ResolvedJob | None:
    """The resolved job of the run, ready to launch; JobError (the item's failure message) when it
    cannot be. `materialize` writes a code job's source where the workload will mount it (the code
    PVC); without it the workload's init container fetches the source."""
    if not names_a_job(run_spec):
        return None
    job = await resolver.resolve(run_spec.get("job"), str(run_spec.get("entity") or ""),
                                 str(run_spec.get("project") or ""))
    if job.has_code and not job.base_image and builder not in ("noop", "kaniko"):  # kaniko: the build step
        raise JobError(f"job {job.name} needs an image build and builder type {builder!r} cannot build in "
                       "Kubernetes; use builder type noop (runs it on a base image)")
    if job.has_code and materialize is not None and (job.base_image or builder == "noop"):  # runs on a base image
        await materialize(job)
    return job


class JobStep:
    """The launch pipeline's prepare step for `runSpec.job` (agent.controller.prepare.Preparer):
    resolves the job into `ctx.job`, which the manifest builds from. Fast (a few W&B requests,
    cached per artifact), so no launch record. A job that cannot run fails the item; W&B not
    answering leaves it un-acked, so W&B hands it out again."""

    name = "job"
    durable = False
    concurrency = 8

    def __init__(self, resolver: JobResolver, *, builder: str, materialize: Materialize | None = None) -> None:
        self._resolver = resolver
        self._builder = builder
        self._materialize = materialize

    def wants(self, spec: Mapping[str, Any]) -> bool:
        return names_a_job(spec)

    async def prepare(self, ctx: Any) -> dict[str, Any]:
        from agent.controller.prepare import LeaveQueued, PrepareError

        try:
            ctx.job = await prepare_job(ctx.spec, self._resolver, builder=self._builder, materialize=self._materialize)
        except JobError as exc:
            raise PrepareError("agent", str(exc)) from None
        except BackendError as exc:
            raise LeaveQueued(f"resolving the job failed: {exc}") from None
        return dict(ctx.spec)
