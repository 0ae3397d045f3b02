"""build_workload: a popped run spec (queue config merged with the run's own arguments) -> the
Kubernetes objects to create, in creation order, the workload last."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from agent.jobspec import ResolvedJob
from agent.manifest.codemount import SourcePlan, apply_code_mount, plan_source
from agent.manifest.env import merge_env, run_env
from agent.manifest.errors import ManifestError
from agent.manifest.macros import RunInfo, expand_macros, kubernetes_args, run_info
from agent.manifest.names import (
    ANN_ENTITY,
    ANN_ITEM_ID,
    ANN_PROJECT,
    ANN_QUEUE,
    ANN_RUN_ID,
    ANN_RUN_NAME,
    LABEL_ITEM,
    LABEL_MONITOR,
    LABEL_QUEUE,
    LABEL_ROLE,
    LABEL_RUN_ID,
    dns_name,
    identity_labels,
    item_label,
    label_value,
    workload_name,
)
from agent.manifest.podpolicy import (
    apply_security_defaults,
    check_annotations,
    check_meta,
    check_pod_spec,
    check_shape,
    containers_of,
    expect,
    pod_templates,
)
from agent.manifest.settings import SECURITY_LEVELS, ManifestSettings

JOB_API_VERSIONS = ("batch/v1", "batch/v1beta1")

# Keys a queue config may carry at the top level of resource_args.kubernetes that are agent
# directives, not part of the object sent to the API server.
_DIRECTIVE_KEYS = ("namespace", "wait_for_ready", "wait_timeout", "configFile", "context", "builder",
                   "group", "version")


def _str_list(value: Any, what: str) -> list[str] | None:
    if value in (None, [], ""):
        return None
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise ManifestError("overrides", f"{what} must be a list of strings")
    return [str(v) for v in value]


def resolve_namespace(config: Mapping[str, Any], settings: ManifestSettings) -> str:
    meta = config.get("metadata") or {}
    namespace = (meta.get("namespace") if isinstance(meta, Mapping) else None) or config.get("namespace")
    namespace = str(namespace) if namespace else settings.agent_namespace
    targets = settings.targets()
    if namespace not in targets:
        raise ManifestError("namespace", f"namespace {namespace} is not a target of this agent "
                                         f"(targets: {', '.join(targets)})")
    return namespace


def _label_set(run: RunInfo, item_id: str, queue: str, settings: ManifestSettings,
               role: str) -> dict[str, str]:
    labels = {str(k): label_value(v) for k, v in settings.extra_labels.items()}
    labels.update(identity_labels(settings))
    labels.update({
        LABEL_MONITOR: "true",
        LABEL_RUN_ID: label_value(run.run_id),
        LABEL_QUEUE: label_value(queue),
        LABEL_ITEM: item_label(item_id),
        LABEL_ROLE: role,
    })
    return labels


def _annotation_set(run: RunInfo, item_id: str, queue: str) -> dict[str, str]:
    ann = {ANN_ITEM_ID: item_id, ANN_RUN_ID: run.run_id, ANN_QUEUE: queue,
           ANN_ENTITY: run.entity, ANN_PROJECT: run.project}
    if run.run_name:
        ann[ANN_RUN_NAME] = run.run_name
    return ann


def _sanitize_user_labels(meta: dict[str, Any]) -> None:
    labels = meta.get("labels")
    if isinstance(labels, dict):
        meta["labels"] = {str(k): label_value(v) for k, v in labels.items()}


def _stamp(obj: dict[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]) -> None:
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise ManifestError("metadata", "metadata must be an object")
    _sanitize_user_labels(meta)
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {**{str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
                           **annotations}


def _prepare_pods(obj: dict[str, Any], *, env: list[dict[str, Any]], pod_labels: Mapping[str, str],
                  settings: ManifestSettings, where: str, set_image: str | None, image_forced: bool,
                  args: list[str] | None, command: list[str] | None, job_defaults: bool,
                  default_command: list[str] | None = None, source: SourcePlan | None = None) -> None:
    templates = list(pod_templates(obj))
    if not templates:
        raise ManifestError("containers", f"{where} has no pod template with containers")
    for tmpl in templates:
        if tmpl.get("metadata") is None:
            tmpl["metadata"] = {}
        tmeta = tmpl["metadata"]
        check_meta(tmeta, f"{where} pod template")
        check_annotations(tmeta, settings, where)
        _sanitize_user_labels(tmeta)
        tmeta["labels"] = {**(tmeta.get("labels") or {}), **pod_labels}
        pod_spec = tmpl["spec"]
        containers = pod_spec["containers"]
        if not containers:
            containers.append({})
        if job_defaults:
            pod_spec.setdefault("restartPolicy", "Never")
        for i, c in enumerate(containers):
            if not isinstance(c, dict):
                raise ManifestError("containers", f"{where}: containers[{i}] is not an object")
            c.setdefault("name", f"launch{i}")
        main = containers[0]
        if set_image and (image_forced or not any(c.get("image") for c in containers)):
            main["image"] = set_image
        if args is not None:
            main["args"] = args
        if command is not None:
            main["command"] = command
        elif default_command and not main.get("command"):
            main["command"] = list(default_command)
        for i, c in enumerate(containers):
            if not c.get("image"):
                raise ManifestError("image", f"{where}: container {c.get('name', i)!r} has no image "
                                             "(use ${image_uri} or set docker_image on the run)")
        for _, c in containers_of(pod_spec):
            merge_env(c, env)
        check_pod_spec(pod_spec, settings, where)
        if source is not None:
            apply_code_mount(pod_spec, source, settings)
        apply_security_defaults(pod_spec, settings)


def _user_name(meta: Mapping[str, Any]) -> str | None:
    name = meta.get("name")
    return dns_name(str(name)) if name else None


def _per_user_key(run_spec: Mapping[str, Any], settings: ManifestSettings) -> str | None:
    key = run_spec.get("_wandb_api_key")
    if key in (None, ""):
        return None
    if not isinstance(key, str):
        raise ManifestError("per-user-keys", "runSpec._wandb_api_key must be a string")
    if not settings.per_user_keys:
        raise ManifestError("per-user-keys", "this item carries its own W&B API key (runSpec._wandb_api_key); "
                                             "the agent runs such items only with per-user keys turned on: chart "
                                             "value agent.perUserApiKeys=true (generator values --per-user-keys)")
    return key


def _job_image(run_spec: Mapping[str, Any], job: ResolvedJob | None, overrides: Mapping[str, Any],
               settings: ManifestSettings) -> tuple[str | None, SourcePlan | None]:
    """The image a resolved job runs on, and the plan of a code job; (None, None) without a job."""
    if job is None:
        if run_spec.get("job") and not run_info(run_spec).image_uri:
            raise ManifestError("job", f"the run names job {run_spec.get('job')!r}, which was not resolved")
        return None, None
    if not job.has_code:
        return job.image, None
    builder = kubernetes_args(run_spec).get("builder") or {}
    plan = plan_source(job, builder if isinstance(builder, Mapping) else {}, overrides, settings)
    return plan.image, plan


def build_workload(run_spec: Mapping[str, Any], *, item_id: str, queue: str,
                   settings: ManifestSettings, job: ResolvedJob | None = None) -> list[dict[str, Any]]:
    """The objects to create for one run-queue item, in creation order; the workload is last.

    `job` is the resolved `runSpec.job` (agent.backend.jobs): an image job runs its image, a code or
    git job runs on a base image with its code mounted (agent.manifest.codemount).
    Raises ManifestError (rule, message) for anything the agent refuses.
    """
    if settings.security_level not in SECURITY_LEVELS:
        raise ManifestError("security-level", f"security level {settings.security_level!r} is not one of "
                                              f"{', '.join(SECURITY_LEVELS)}")
    overrides = run_spec.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise ManifestError("overrides", "overrides must be an object")
    image, source = _job_image(run_spec, job, overrides, settings)
    run = run_info(run_spec, image=image, prebuilt=source is None) if image else run_info(run_spec)
    user_key = _per_user_key(run_spec, settings)
    args = _str_list(overrides.get("args"), "overrides.args")
    command = _str_list(overrides.get("entry_point"), "overrides.entry_point")
    if settings.secure_mode and command:
        raise ManifestError("secure-mode", "overrides.entry_point is not allowed with secure_mode")
    macros = run.macros()
    config = expand_macros(kubernetes_args(run_spec), macros)
    namespace = resolve_namespace(config, settings)
    for key in _DIRECTIVE_KEYS:
        config.pop(key, None)

    check_meta(config.get("metadata"), "resource_args.kubernetes")
    expect(config.get("spec"), dict, "resource_args.kubernetes.spec")
    check_shape(config, "resource_args.kubernetes")
    api_version = str(config.get("apiVersion") or "batch/v1")
    is_job = api_version in JOB_API_VERSIONS
    kind = str(config.get("kind") or ("Job" if is_job else ""))
    if not kind:
        raise ManifestError("kind", f"a custom resource ({api_version}) needs a kind")
    if is_job and kind != "Job":
        raise ManifestError("kind", f"{api_version} objects launched by the agent must be Jobs, not {kind}")

    key_secret = f"{workload_name(run, item_id)}-wandb-api-key" if user_key else None
    env = run_env(run_spec, run, item_id=item_id, queue=queue, settings=settings, key_secret=key_secret)
    annotations = _annotation_set(run, item_id, queue)
    objs: list[dict[str, Any]] = []
    if user_key and key_secret:
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                  "metadata": {"name": key_secret, "namespace": namespace}, "stringData": {"password": user_key}}
        _stamp(secret, _label_set(run, item_id, queue, settings, "auxiliary"), annotations)
        objs.append(secret)

    services = run_spec.get("additional_services") or []
    if not isinstance(services, list):
        raise ManifestError("additional-services", "additional_services must be a list")
    for i, service in enumerate(services):
        aux = expand_macros(copy.deepcopy((service or {}).get("config") if isinstance(service, Mapping)
                                          else None), macros)
        if not isinstance(aux, dict) or not aux.get("kind") or not aux.get("apiVersion"):
            raise ManifestError("additional-services",
                                f"additional_services[{i}].config needs apiVersion and kind")
        check_meta(aux.get("metadata"), f"additional_services[{i}]")
        check_shape(aux, f"additional_services[{i}]")
        ameta = aux.setdefault("metadata", {})
        ans = ameta.get("namespace") or namespace
        if ans != namespace:
            raise ManifestError("namespace", f"additional_services[{i}] must be in the run's namespace "
                                             f"{namespace}, not {ans}")
        ameta["namespace"] = namespace
        ameta["name"] = _user_name(ameta) or dns_name(f"{run.project}-{run.run_id}-aux{i}", salt=item_id)
        _stamp(aux, _label_set(run, item_id, queue, settings, "auxiliary"), annotations)
        where = f"additional_services[{i}] {aux['kind']}"
        pod_labels = _label_set(run, item_id, queue, settings, "pod")
        for tmpl in pod_templates(aux):
            check_annotations(tmpl.get("metadata") or {}, settings, where)
            tmpl.setdefault("metadata", {})["labels"] = {**(tmpl["metadata"].get("labels") or {}),
                                                         **pod_labels}
            for _, c in containers_of(tmpl["spec"]):
                merge_env(c, [e for e in env if e["name"].startswith("WANDB_CONFIG")] + env[:2])
            check_pod_spec(tmpl["spec"], settings, where)
            apply_security_defaults(tmpl["spec"], settings)
        objs.append(aux)

    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    obj.update(config)
    obj["apiVersion"], obj["kind"] = api_version, kind
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise ManifestError("metadata", "metadata must be an object")
    meta.pop("generateName", None)
    meta["name"] = _user_name(meta) or workload_name(run, item_id)
    meta["namespace"] = namespace
    check_annotations(meta, settings, kind)
    _stamp(obj, _label_set(run, item_id, queue, settings, "workload"), annotations)
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    if not isinstance(spec, dict):
        raise ManifestError("spec", "spec must be an object")
    if is_job:
        spec.setdefault("backoffLimit", 0)
        spec.setdefault("ttlSecondsAfterFinished", 60)
        template = spec.setdefault("template", {})
        if not isinstance(template, dict):
            raise ManifestError("spec", "spec.template must be an object")
        tspec = template.setdefault("spec", {})
        if not isinstance(tspec, dict):
            raise ManifestError("spec", "spec.template.spec must be an object")
        tspec.setdefault("containers", [])
        if not isinstance(tspec["containers"], list):
            raise ManifestError("containers", "spec.template.spec.containers must be a list")
    _prepare_pods(obj, env=env, pod_labels=_label_set(run, item_id, queue, settings, "pod"),
                  settings=settings, where=kind, set_image=run.image_uri or None,
                  image_forced=bool(run.image_uri) and run.prebuilt and is_job, args=args, command=command,
                  job_defaults=is_job, default_command=list(job.entrypoint) if job else None, source=source)
    objs.append(obj)
    return objs


def workload_of(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The main workload among build_workload's objects (the last one)."""
    return objs[-1]
