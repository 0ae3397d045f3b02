"""The Kaniko build Job (pure: settings + one build in, a Job manifest out).

Like the official agent's: the user's ``kaniko-config`` (a partial Job, at most one container)
is the start; ``--k=v`` args override or add to ours (``--context --dockerfile --destination
--cache=true --cache-repo --snapshot-mode=redo --compressed-caching=false``); ``backoffLimit 0``,
``activeDeadlineSeconds 1800`` and ``restartPolicy Never`` unless set; the agent's
ServiceAccount; ``AWS_REGION`` for ECR; the Azure storage key from a Secret of the agent's own
namespace; the PVC at ``/context``; a docker config Secret at ``/kaniko/.docker``; the
``secret-name`` credentials file where Kaniko's credential helpers read it.

Ours besides: one Job per image (so concurrent runs of a job version share one build), the
agent's identity labels (re-adopted after a restart, watched with the run workloads), the
security context Kaniko can run with (root, but no privilege escalation, seccomp
``RuntimeDefault``, only the capabilities image builds use), no API token mounted, and a TTL
so nothing is left behind when the agent is gone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.build.source import DOCKERFILE_NAME, BuildError
from agent.manifest import LABEL_ROLE, dns_name, identity_labels, short_hash
from agent.manifest.settings import ManifestSettings

ROLE_BUILD = "build"
ANN_IMAGE = "launch-agent.wandb.ai/image"
ANN_CONTEXT = "launch-agent.wandb.ai/context"
DEFAULT_JOB_NAME = "wandb-launch-container-build"
DEFAULT_KANIKO_IMAGE = "gcr.io/kaniko-project/executor:v1.11.0"  # the official agent's effective default
DEFAULT_DEADLINE = 1800
BUILD_TTL = 3600
CONTAINER = "wandb-container-build"
PVC_VOLUME = "kaniko-pvc"
PVC_CONTEXT_DIR = "/context"
AZURE_KEY_SECRET = "azure-storage-access-key"  # the official chart's name; key `password`
# Kaniko runs as root and unpacks images into its own root; these are what that needs.
KANIKO_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETFCAP",
                       "SETPCAP")


@dataclass(frozen=True)
class KanikoSettings:
    """The builder block of the agent config plus what the agent's environment adds."""

    destination: str  # repository without a tag
    registry_kind: str | None = None  # ecr, gcr, acr or None
    registry_region: str = ""
    context_store: str = ""  # s3://, gs:// or https://<account>.blob.core.windows.net/...
    environment: str = ""  # aws, gcp, azure or ""
    region: str = ""
    build_job_name: str = DEFAULT_JOB_NAME
    kaniko_image: str = DEFAULT_KANIKO_IMAGE
    kaniko_config: Mapping[str, Any] = field(default_factory=dict)
    secret_name: str = ""
    secret_key: str = ""
    pvc_name: str = ""  # WANDB_LAUNCH_KANIKO_PVC_NAME
    pvc_mount_path: str = "/kaniko"  # WANDB_LAUNCH_KANIKO_PVC_MOUNT_PATH, in the agent's pod
    docker_config_secret: str = ""  # WANDB_LAUNCH_KANIKO_AUTH_SECRET (kanikoDockerConfigSecret)
    azure_key_secret: str = ""  # LAUNCH_AGENT_AZURE_STORAGE_SECRET (azureStorageAccessKey); "" = none
    service_account: str = "default"  # WANDB_LAUNCH_SERVICE_ACCOUNT_NAME


def build_name(settings: KanikoSettings, image_uri: str) -> str:
    """The Job's name: the build-job-name prefix and a hash of the image, so one image is one build."""
    suffix = short_hash(image_uri, length=10)
    return f"{dns_name(settings.build_job_name, max_len=63 - len(suffix) - 1)}-{suffix}"


def _args(user: list[Any], ours: dict[str, str]) -> list[str]:
    merged = dict(ours)
    for raw in user:
        text = str(raw)
        if "=" not in text:
            raise BuildError(f"builder.kaniko-config: container arg {text!r} must be of the form --name=value",
                             stage="agent")
        key, value = text.split("=", 1)
        merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def build_job(settings: KanikoSettings, manifest: ManifestSettings, *, image_uri: str, context_url: str,
              context_digest: str = "", init_containers: list[dict[str, Any]] | None = None,
              extra_volumes: list[dict[str, Any]] | None = None,
              extra_mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The Job that builds *image_uri* from *context_url* (``s3://``, ``gs://``, ``https://``, ``tar://``)."""
    job = copy.deepcopy(dict(settings.kaniko_config or {}))
    if not isinstance(job, dict):
        raise BuildError("builder.kaniko-config must be a partial Job manifest (a mapping)", stage="agent")
    meta = job.setdefault("metadata", {})
    spec = job.setdefault("spec", {})
    template = spec.setdefault("template", {})
    pod_meta = template.setdefault("metadata", {})
    pod = template.setdefault("spec", {})
    containers = pod.get("containers") or [{}]
    if len(containers) > 1:
        raise BuildError("builder.kaniko-config: a build Job has one container", stage="agent")
    container = dict(containers[0])
    volumes = list(pod.get("volumes") or []) + list(extra_volumes or [])
    mounts = list(container.get("volumeMounts") or []) + list(extra_mounts or [])
    env = list(container.get("env") or [])

    if settings.pvc_name:
        volumes.append({"name": PVC_VOLUME, "persistentVolumeClaim": {"claimName": settings.pvc_name}})
        mounts.append({"name": PVC_VOLUME, "mountPath": PVC_CONTEXT_DIR})
    if settings.registry_kind == "ecr" and settings.registry_region:
        env.append({"name": "AWS_REGION", "value": settings.registry_region})
    if settings.environment == "azure" and settings.azure_key_secret and context_url.startswith("https://"):
        env.append({"name": "AZURE_STORAGE_ACCESS_KEY",
                    "valueFrom": {"secretKeyRef": {"name": settings.azure_key_secret, "key": "password"}}})
    if settings.docker_config_secret:
        volumes.append({"name": "kaniko-docker-config", "secret": {
            "secretName": settings.docker_config_secret, "items": [{"key": ".dockerconfigjson",
                                                                    "path": "config.json"}]}})
        mounts.append({"name": "kaniko-docker-config", "mountPath": "/kaniko/.docker", "readOnly": True})
    if settings.secret_name and settings.secret_key:
        if settings.registry_kind == "ecr":
            path, file = "/root/.aws", "credentials"
        elif settings.registry_kind == "gcr":
            path, file = "/kaniko/.config/gcloud", "config.json"
            env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{path}/{file}"})
        else:
            raise BuildError("builder.secret-name works with ECR and Artifact Registry destinations only; use "
                             "kanikoDockerConfigSecret for other registries", stage="agent")
        volumes.append({"name": "registry-credentials", "secret": {
            "secretName": settings.secret_name, "items": [{"key": settings.secret_key, "path": file}]}})
        mounts.append({"name": "registry-credentials", "mountPath": path, "readOnly": True})

    destination = image_uri.removeprefix("https://")
    ours = {"--context": context_url, "--dockerfile": DOCKERFILE_NAME, "--destination": destination,
            "--cache": "true", "--cache-repo": settings.destination.removeprefix("https://"),
            "--snapshot-mode": "redo", "--compressed-caching": "false"}
    container["args"] = _args(list(container.get("args") or []), ours)
    container.setdefault("name", CONTAINER)
    container.setdefault("image", settings.kaniko_image)
    container["env"] = env
    container["volumeMounts"] = mounts
    security = container.setdefault("securityContext", {})
    security.setdefault("allowPrivilegeEscalation", False)
    security.setdefault("capabilities", {"drop": ["ALL"], "add": list(KANIKO_CAPABILITIES)})
    security.setdefault("seccompProfile", {"type": "RuntimeDefault"})

    labels = {**identity_labels(manifest), LABEL_ROLE: ROLE_BUILD, "wandb": "launch"}
    if settings.registry_kind == "acr" and not settings.docker_config_secret:
        pod_meta.setdefault("labels", {})["azure.workload.identity/use"] = "true"
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {**(meta.get("annotations") or {}), ANN_IMAGE: image_uri,
                           **({ANN_CONTEXT: context_digest} if context_digest else {})}
    meta["name"] = build_name(settings, image_uri)  # one image, one build: a user name would merge builds
    meta["namespace"] = manifest.agent_namespace
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
    spec.setdefault("backoffLimit", 0)
    spec.setdefault("ttlSecondsAfterFinished", BUILD_TTL)
    # The pod's deadline counts from its start; this one also ends a build that never schedules.
    spec.setdefault("activeDeadlineSeconds", 3 * int(pod.get("activeDeadlineSeconds") or DEFAULT_DEADLINE))
    pod.setdefault("restartPolicy", "Never")
    pod.setdefault("activeDeadlineSeconds", DEFAULT_DEADLINE)
    pod.setdefault("serviceAccountName", settings.service_account or "default")
    pod.setdefault("automountServiceAccountToken", False)
    if init_containers:
        pod["initContainers"] = list(pod.get("initContainers") or []) + init_containers
    pod["containers"] = [container]
    pod["volumes"] = volumes
    return {**job, "apiVersion": "batch/v1", "kind": "Job"}
