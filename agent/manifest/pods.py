"""The pod templates of any object the agent creates (the workload and every additional service):
labelled, named, given their env and code mount, hardened and checked by one set of rules.

What the user wrote is checked first (field types, secure_mode, the Secret allowlist, service
accounts); the agent then adds its env (the API-key reference), the code mount and the security
defaults; the Pod Security level is checked last, on the pod exactly as it will be submitted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.manifest.codemount import SourcePlan, apply_code_mount
from agent.manifest.env import merge_env
from agent.manifest.errors import ManifestError
from agent.manifest.labels import metadata_of, stamp
from agent.manifest.podpolicy import (
    apply_security_defaults,
    check_level,
    check_user_pod,
    containers_of,
    pod_templates,
)
from agent.manifest.pss import check_types
from agent.manifest.settings import ManifestSettings


@dataclass(frozen=True)
class PodPlan:
    """What goes into every pod template of one object."""

    env: list[dict[str, Any]]
    labels: Mapping[str, str]
    image: str | None = None  # the run's image for the first container
    image_forced: bool = False  # set it even when a container names an image
    args: list[str] | None = None
    command: list[str] | None = None
    job_defaults: bool = False  # restartPolicy Never
    default_command: list[str] | None = None  # the job's entrypoint, when the container sets none
    source: SourcePlan | None = None  # a code job's code mount


def prepare_pods(obj: dict[str, Any], plan: PodPlan, settings: ManifestSettings, where: str) -> None:
    """Every pod template of *obj*; ManifestError when there is none or one breaks a rule."""
    templates = list(pod_templates(obj))
    if not templates:
        raise ManifestError("containers", f"{where} has no pod template with containers")
    for tmpl in templates:
        stamp(metadata_of(tmpl, where), plan.labels, None, where)
        pod_spec = tmpl["spec"]
        containers = pod_spec["containers"]
        if not containers:
            containers.append({})
        if plan.job_defaults:
            pod_spec.setdefault("restartPolicy", "Never")
        for i, c in enumerate(containers):
            if not isinstance(c, dict):
                raise ManifestError("containers", f"{where}: containers[{i}] is not an object")
            c.setdefault("name", f"launch{i}")
        main = containers[0]
        if plan.image and (plan.image_forced or not any(c.get("image") for c in containers)):
            main["image"] = plan.image
        if plan.args is not None:
            main["args"] = plan.args
        if plan.command is not None:
            main["command"] = plan.command
        elif plan.default_command and not main.get("command"):
            main["command"] = list(plan.default_command)
        for i, c in enumerate(containers):
            if not c.get("image"):
                raise ManifestError("image", f"{where}: container {c.get('name', i)!r} has no image "
                                             "(use ${image_uri} or set docker_image on the run)")
        check_types(tmpl["metadata"], pod_spec)
        check_user_pod(pod_spec, settings, where)  # what the queue config and run spec wrote
        for _, c in containers_of(pod_spec):
            merge_env(c, plan.env)
        if plan.source is not None:
            apply_code_mount(pod_spec, plan.source, settings)
        apply_security_defaults(pod_spec, settings)
        check_level(tmpl["metadata"], pod_spec, settings, where)  # the pod as it will be submitted
