"""One image per job version: check the registry, else start (or join) the build Job; read its outcome.

Level-triggered and idempotent. The build Job is named after the image, so a second run of the
same job version — concurrent, or after an agent restart — finds the same Job (``409`` on
create means "already building") instead of starting another, and an image already in the
registry is never rebuilt. What the agent must remember lives on the Job: its labels (the
agent's identity, role ``build``) and annotations (the image, the context digest).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx

from agent.build import context, registry, status, stores
from agent.build.job import ANN_IMAGE, CONTAINER, ROLE_BUILD, KanikoSettings, build_job, build_name
from agent.build.source import BuildError, BuildSource
from agent.build.uris import ImageRef, image_ref
from agent.kube.client import JOBS, PODS, Kube, KubeError, ResourceType, WatchExpired
from agent.manifest import LABEL_ROLE
from agent.manifest.settings import ManifestSettings

SECRETS = ResourceType("", "v1", "Secret", "secrets")


@dataclass(frozen=True)
class Prepared:
    """The image a run launches on; ``job`` is the build Job's name while it is being built."""

    image_uri: str
    job: str = ""
    started: bool = False  # this call created the build Job

    @property
    def ready(self) -> bool:
        return not self.job


def _transport(settings: KanikoSettings, host: str) -> registry.Transport:
    """Plain HTTP / no TLS check for the registries Kaniko is told to treat so (one source of truth)."""
    args = {}
    for raw in ((settings.kaniko_config.get("spec") or {}).get("template", {}).get("spec", {}).get(
            "containers") or [{}])[0].get("args") or []:
        key, _, value = str(raw).partition("=")
        args.setdefault(key, []).append(value or "true")
    insecure = "true" in args.get("--insecure", []) or host in args.get("--insecure-registry", [])
    skip_tls = "true" in args.get("--skip-tls-verify", []) or host in args.get("--skip-tls-verify-registry", [])
    return registry.Transport(plain_http=insecure, verify_tls=not skip_tls)


class Builder:
    def __init__(self, settings: KanikoSettings, manifest: ManifestSettings, kube: Kube, clouds: stores.Clouds,
                 workdir: Path, log: logging.Logger, fetch_image: str = "") -> None:
        self.s = settings
        self.manifest = manifest
        self.kube = kube
        self.clouds = clouds
        self.workdir = workdir
        self.log = log
        self.fetch_image = fetch_image
        self.namespace = manifest.agent_namespace

    # ---------------------------------------------------------------- registry

    async def _login(self, host: str) -> tuple[str, str] | None:
        kind = self.s.registry_kind
        if host == image_ref(self.s.destination, "x").host and kind == "ecr":
            from agent.build import aws

            return await aws.ecr_login(self.clouds.http, self.clouds.aws, self.s.registry_region)
        if kind == "gcr" and host.endswith("-docker.pkg.dev"):
            return "oauth2accesstoken", await self.clouds.gcp.token()
        if self.s.docker_config_secret:
            secret = await self.kube.get(SECRETS, self.namespace, self.s.docker_config_secret)
            raw = ((secret or {}).get("data") or {}).get(".dockerconfigjson", "")
            if raw:
                import base64

                found = await registry.docker_config_login(registry.parse_docker_config(base64.b64decode(raw)))(host)
                if found:
                    return found
        return None

    async def exists(self, ref: ImageRef) -> bool:
        transport = _transport(self.s, ref.host)
        http = self.clouds.http
        try:
            if not transport.verify_tls:
                async with httpx.AsyncClient(verify=False, timeout=30.0) as insecure:
                    return await registry.image_exists(insecure, ref, self._login, transport)
            return await registry.image_exists(http, ref, self._login, transport)
        except (registry.RegistryError, BuildError) as exc:
            self.log.warning("cannot tell whether %s exists (%s); building it", ref, exc)
            return False

    # ---------------------------------------------------------------- builds

    async def prepare(self, source: BuildSource) -> Prepared:
        """The image for *source*: ready when the registry has it, else the build Job building it."""
        ctx = context.create(source, self.workdir)
        try:
            ref = image_ref(self.s.destination, ctx.tag)
            image_uri = str(ref)
            if await self.exists(ref):
                self.log.info("image %s exists; no build", image_uri)
                return Prepared(image_uri)
            name = build_name(self.s, image_uri)
            existing = await self.kube.get(JOBS, self.namespace, name)
            if existing is not None:
                self.log.info("image %s is being built by Job %s/%s; joining it", image_uri, self.namespace, name)
                return Prepared(image_uri, name)
            uploaded = await stores.upload(self.clouds, self.s, ctx.archive, ctx.digest, name, self.fetch_image)
            job = build_job(self.s, self.manifest, image_uri=image_uri, context_url=uploaded.context_url,
                            context_digest=ctx.digest, init_containers=uploaded.init_containers,
                            extra_volumes=uploaded.volumes, extra_mounts=uploaded.mounts)
            created, fresh = await self.kube.create(job)
            if uploaded.secret_data and fresh:
                await self._context_secret(created, uploaded.secret_data)
            self.log.info("%s build Job %s/%s for %s (context %s, %d bytes)", "started" if fresh else "joined",
                          self.namespace, name, image_uri, uploaded.context_url, ctx.size)
            return Prepared(image_uri, name, started=fresh)
        finally:
            ctx.archive.unlink(missing_ok=True)

    async def _context_secret(self, job: dict[str, Any], data: dict[str, str]) -> None:
        import base64

        meta = job["metadata"]
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": stores.secret_name(meta["name"]), "namespace": self.namespace,
                               "labels": dict(meta.get("labels") or {}),
                               "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                                    "uid": meta["uid"]}]},
                  "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
        await self.kube.create(secret)

    async def outcome(self, job: dict[str, Any]) -> tuple[status.BuildState, str, list[str]]:
        """(state, failure message, failed packages) of a build Job object."""
        state = status.job_state(job)
        if state.state == status.BUILDING:
            return state, "", []
        containers = ((job.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
        log = await self.logs(job["metadata"]["name"], containers[0].get("name") or CONTAINER)
        image = (job["metadata"].get("annotations") or {}).get(ANN_IMAGE, "")
        if state.state == status.FAILED:
            return state, status.failure_message(image, job["metadata"]["name"], self.namespace, state.reason, log), []
        return state, "", status.failed_packages(log)

    async def logs(self, name: str, container: str = CONTAINER) -> str:
        try:
            pods, _ = await self.kube.list(PODS, self.namespace, f"job-name={name}")
        except KubeError:
            return ""
        pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
        for pod in reversed(pods):
            text = await self.kube.pod_log(self.namespace, pod["metadata"]["name"], container, tail_lines=200)
            if text:
                return text
        return ""

    async def wait(self, name: str, timeout: float | None = None) -> dict[str, Any] | None:
        """The build Job once it is finished (watched, not polled); None when it is deleted first."""
        selector = f"{LABEL_ROLE}={ROLE_BUILD}"

        async def follow() -> dict[str, Any] | None:
            while True:
                try:
                    items, rv = await self.kube.list(JOBS, self.namespace, selector)
                    found = next((j for j in items if j["metadata"]["name"] == name), None)
                    if found is None:
                        return None
                    if status.job_state(found).state != status.BUILDING:
                        return found
                    async for etype, obj in self.kube.watch(JOBS, self.namespace, selector, rv):
                        if etype == "BOOKMARK" or obj["metadata"]["name"] != name:
                            continue
                        if etype == "DELETED":
                            return None
                        if status.job_state(obj).state != status.BUILDING:
                            return obj
                except WatchExpired:
                    continue
                except (KubeError, httpx.HTTPError) as exc:
                    self.log.warning("watching build Job %s/%s: %s; watching again", self.namespace, name, exc)
                    await asyncio.sleep(2.0)

        return await asyncio.wait_for(follow(), timeout)

    async def finish(self, name: str) -> None:
        """Delete a finished build Job (Background propagation: its pod and context Secret go too)."""
        try:
            await self.kube.delete(JOBS, self.namespace, name)
        except KubeError as exc:
            self.log.warning("deleting build Job %s/%s failed: %s (its TTL removes it)", self.namespace, name, exc)
