"""build_workload: a popped run spec (queue config merged with the run's own arguments) -> the
Kubernetes objects to create, in creation order, the workload last."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.jobspec import ResolvedJob
from agent.manifest.codemount import SourcePlan, plan_source
from agent.manifest.env import run_env
from agent.manifest.errors import ManifestError
from agent.manifest.labels import annotation_set, label_set, metadata_of, stamp
from agent.manifest.macros import expand_macros, kubernetes_args, run_info
from agent.manifest.names import object_name, workload_name
from agent.manifest.podpolicy import check_meta, check_shape, expect
from agent.manifest.pods import PodPlan, prepare_pods
from agent.manifest.services import auxiliary_objects
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
    annotations = annotation_set(run, item_id, queue)
    objs: list[dict[str, Any]] = []
    if user_key and key_secret:
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                  "metadata": {"name": key_secret, "namespace": namespace}, "stringData": {"password": user_key}}
        stamp(secret["metadata"], label_set(run, item_id, queue, settings, "auxiliary"), annotations, "Secret")
        objs.append(secret)

    pod_labels = label_set(run, item_id, queue, settings, "pod")
    aux_env = [e for e in env if e["name"].startswith("WANDB_CONFIG")] + env[:2]
    objs += auxiliary_objects(
        run_spec.get("additional_services"), macros=macros, namespace=namespace,
        base_name=f"{run.project}-{run.run_id}", item_id=item_id,
        labels=label_set(run, item_id, queue, settings, "auxiliary"), annotations=annotations,
        pods=PodPlan(env=aux_env, labels=pod_labels), settings=settings)

    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    obj.update(config)
    obj["apiVersion"], obj["kind"] = api_version, kind
    meta = metadata_of(obj, kind)
    meta.pop("generateName", None)
    meta["name"] = object_name(kind, meta.get("name"), "") if meta.get("name") else workload_name(run, item_id)
    meta["namespace"] = namespace
    stamp(meta, label_set(run, item_id, queue, settings, "workload"), annotations, kind)
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
    plan = PodPlan(env=env, labels=pod_labels, image=run.image_uri or None,
                   image_forced=bool(run.image_uri) and run.prebuilt and is_job, args=args, command=command,
                   job_defaults=is_job, default_command=list(job.entrypoint) if job else None, source=source)
    prepare_pods(obj, plan, settings, kind)
    objs.append(obj)
    return objs


def workload_of(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The main workload among build_workload's objects (the last one)."""
    return objs[-1]
