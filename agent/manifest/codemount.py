"""Code jobs on a base image: the code volume at the official path, the init container that fetches
the source into it (the agent's own image running ``python -m agent fetch-source``), or the code
PVC of the official agent's PVC mode; the working directory; and, on a base image the agent chose,
the install of the job's frozen requirements before the job's command. Pure: no I/O.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.jobspec import CODE_MOUNT_DIR, FROZEN_REQUIREMENTS, JOB_FILES_DIR, ResolvedJob
from agent.manifest.errors import ManifestError
from agent.manifest.settings import ManifestSettings

DEFAULT_BASE_IMAGE = "python:3.12-slim"  # the official agent's default for code jobs without a build
VOLUME = "wandb-source-code-volume"
INIT_CONTAINER = "wandb-source-code-init"
GIT_CREDENTIALS_ENV = "LAUNCH_AGENT_GIT_CREDENTIALS"


@dataclass(frozen=True)
class SourcePlan:
    """How one code job runs: on which image, from which volume, with or without the install step."""

    job: ResolvedJob
    image: str
    install_requirements: bool  # the agent chose the base image, so the job's requirements go on it
    working_dir: str
    pvc: str = ""  # claim name in PVC mode; emptyDir + init container otherwise


def plan_source(job: ResolvedJob, builder_args: Mapping[str, Any], overrides: Mapping[str, Any],
                settings: ManifestSettings) -> SourcePlan:
    """`builder_args` is `resource_args.kubernetes.builder` (its `base_image`); `overrides` the run's."""
    chosen = builder_args.get("base_image") if isinstance(builder_args, Mapping) else None
    if chosen is not None and not isinstance(chosen, str):
        raise ManifestError("builder", "resource_args.kubernetes.builder.base_image must be an image name")
    working = overrides.get("working_dir") if isinstance(overrides, Mapping) else None
    if working is not None and (not isinstance(working, str) or ".." in working.split("/")):
        raise ManifestError("overrides", "overrides.working_dir must be a relative path inside the code")
    working_dir = f"{CODE_MOUNT_DIR}/{working.strip('/')}" if working else CODE_MOUNT_DIR
    pvc = settings.code_pvc_name if settings.code_pvc_name and settings.code_pvc_mount_path else ""
    if job.base_image:
        return SourcePlan(job, job.base_image, False, working_dir, pvc)
    return SourcePlan(job, chosen or DEFAULT_BASE_IMAGE, True, working_dir, pvc)


def fetch_args(plan: SourcePlan, settings: ManifestSettings) -> list[str]:
    """The arguments of ``python -m agent fetch-source`` for this job."""
    job = plan.job
    args = ["--dest", CODE_MOUNT_DIR, "--max-bytes", str(settings.max_code_bytes)]
    if job.code is not None:
        args += ["--artifact", job.code.qualified_name, "--artifact-id", job.code.id]
    elif job.git is not None:
        args += ["--git-remote", job.git.remote, "--git-commit", job.git.commit]
    if plan.install_requirements or (job.git is not None and job.has_patch):
        args += ["--job", job.job.qualified_name, "--job-id", job.job.id]
    return args


def _install_command(container: dict[str, Any], working_dir: str) -> None:
    """Install requirements (the user's requirements.txt, else pyproject.toml, else the job's frozen
    ones), then exec the original command and arguments, as the official agent does."""
    original = [*(container.get("command") or []), *(container.get("args") or [])]
    if not original:
        return
    frozen = f"{CODE_MOUNT_DIR}/{JOB_FILES_DIR}/{FROZEN_REQUIREMENTS}"
    reqs, pyproject = f"{working_dir}/requirements.txt", f"{working_dir}/pyproject.toml"
    q = shlex.quote
    script = (f"if [ -f {q(reqs)} ]; then pip install -r {q(reqs)}; "
              f"elif [ -f {q(pyproject)} ]; then pip install {q(working_dir)}; "
              f"elif [ -f {q(frozen)} ]; then pip install -r {q(frozen)}; "
              "else echo 'No requirements file found'; fi"
              f" && exec {' '.join(q(str(p)) for p in original)}")
    container["command"] = ["/bin/sh", "-c"]
    container["args"] = [script]


def apply_code_mount(pod_spec: dict[str, Any], plan: SourcePlan, settings: ManifestSettings) -> None:
    """Mount the code on every container of one pod spec and add what fills the volume."""
    containers = pod_spec["containers"]
    mount: dict[str, Any] = {"name": VOLUME, "mountPath": CODE_MOUNT_DIR}
    if plan.pvc:
        mount["subPath"] = plan.job.image_source
    for c in containers:
        mounts = c.setdefault("volumeMounts", [])
        if not isinstance(mounts, list):
            raise ManifestError("shape", f"container {c.get('name')!r}: volumeMounts must be a list")
        if any(isinstance(m, dict) and m.get("mountPath") == CODE_MOUNT_DIR for m in mounts):
            raise ManifestError("code-mount", f"container {c.get('name')!r} already mounts {CODE_MOUNT_DIR}, "
                                              "where the agent puts the job's code")
        mounts.append(dict(mount))
        c["workingDir"] = plan.working_dir
    if plan.install_requirements:
        _install_command(containers[0], plan.working_dir)
    volumes = pod_spec.setdefault("volumes", [])
    if not isinstance(volumes, list):
        raise ManifestError("shape", "volumes must be a list")
    if any(isinstance(v, dict) and v.get("name") == VOLUME for v in volumes):
        raise ManifestError("code-mount", f"the pod already has a volume named {VOLUME}")
    if plan.pvc:
        volumes.append({"name": VOLUME, "persistentVolumeClaim": {"claimName": plan.pvc}})
        return
    volumes.append({"name": VOLUME, "emptyDir": {}})
    if not settings.source_image:
        raise ManifestError("code-mount", "code and git jobs need the agent's own image for the init container "
                                          "that fetches the code (LAUNCH_AGENT_IMAGE; the chart sets it)")
    key_env = next((e for e in containers[0].get("env") or [] if e.get("name") == "WANDB_API_KEY"), None)
    env: list[dict[str, Any]] = [{"name": "WANDB_BASE_URL", "value": settings.base_url}]
    if key_env is not None:
        env.append(dict(key_env))
    if plan.job.git is not None and settings.git_credentials_secret:
        env.append({"name": GIT_CREDENTIALS_ENV, "valueFrom": {"secretKeyRef": {
            "name": settings.git_credentials_secret, "key": ".git-credentials", "optional": True}}})
    inits = pod_spec.setdefault("initContainers", [])
    if not isinstance(inits, list):
        raise ManifestError("shape", "initContainers must be a list")
    inits.append({
        "name": INIT_CONTAINER,
        "image": settings.source_image,
        "command": ["python", "-m", "agent", "fetch-source"],
        "args": fetch_args(plan, settings),
        "env": env,
        "volumeMounts": [{"name": VOLUME, "mountPath": CODE_MOUNT_DIR}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    })
