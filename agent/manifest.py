"""Turns a popped run spec (queue config merged with the run's own arguments) into Kubernetes objects.

Pure: no I/O, no environment reads. The agent and `python -m generator queue` both call
`build_workload`, so what a preview shows is exactly what the agent submits.

What it guarantees:
- only the six documented macros are expanded; the agent's environment never is;
- object names are deterministic per run-queue item, DNS-1123 safe and at most 63 characters;
- every object (and every pod template inside a custom resource) carries labels that tie it to
  the agent identity, queue, run-queue item and run;
- the W&B API key reaches containers only through a `secretKeyRef`;
- Job `backoffLimit`/`ttlSecondsAfterFinished` and per-container `securityContext` defaults are
  written where Kubernetes reads them, only when the queue config left them unset;
- a namespace outside the agent's targets, or a pod spec that breaks the Pod Security Standards
  level, raises `ManifestError` before anything is created.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

MACROS = ("image_uri", "run_id", "run_name", "project_name", "entity_name", "author")
SECURITY_LEVELS = ("privileged", "baseline", "restricted")
JOB_API_VERSIONS = ("batch/v1", "batch/v1beta1")

LABEL_AGENT = "wandb.ai/agent"
LABEL_MONITOR = "wandb.ai/monitor"
LABEL_RUN_ID = "wandb.ai/run-id"
LABEL_QUEUE = "wandb.ai/queue"
LABEL_ITEM = "wandb.ai/run-queue-item"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_ROLE = "launch-agent.wandb.ai/role"
MANAGED_BY = "launch-agent"
ANN_ITEM_ID = "wandb.ai/run-queue-item-id"
ANN_RUN_ID = "wandb.ai/run-id"
ANN_QUEUE = "wandb.ai/queue"
ANN_ENTITY = "wandb.ai/entity"
ANN_PROJECT = "wandb.ai/project"
ANN_RUN_NAME = "wandb.ai/run-name"

# Keys a queue config may carry at the top level of resource_args.kubernetes that are agent
# directives, not part of the object sent to the API server.
_DIRECTIVE_KEYS = ("namespace", "wait_for_ready", "wait_timeout", "configFile", "context", "builder",
                   "group", "version")

_MACRO_RE = re.compile(r"\$\{(\w+)\}")
_DNS_LABEL_MAX = 63
_ENV_CHUNK = 32670

# Pod Security Standards (baseline): capabilities that may be added, safe sysctls,
# SELinux types; (restricted): volume types.
_BASELINE_CAPS = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
_SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_RESTRICTED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
    "secret",
})
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


class ManifestError(Exception):
    """A queue config or run spec the agent refuses; `rule` names what it broke."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class ManifestSettings:
    """What the agent knows about itself; everything `build_workload` needs besides the spec."""

    agent_namespace: str = "default"
    target_namespaces: tuple[str, ...] = ()  # the agent namespace is always a target
    api_key_secret: str = "wandb-api-key"  # Secret (key `password`) present in every target namespace
    base_url: str = "https://api.wandb.ai"
    agent_identity: str = "launch-agent"  # stable across restarts: the release name
    queue_entity: str = ""
    security_level: str = "baseline"
    secure_mode: bool = False
    # Service accounts a workload may name under baseline/restricted ("default" is always allowed).
    allowed_service_accounts: tuple[str, ...] = ()
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def targets(self) -> tuple[str, ...]:
        seen = [self.agent_namespace]
        seen.extend(ns for ns in self.target_namespaces if ns and ns not in seen)
        return tuple(seen)


@dataclass(frozen=True)
class RunInfo:
    """The run facts that feed macros, env vars and labels."""

    run_id: str
    entity: str
    project: str
    run_name: str
    author: str
    image_uri: str

    def macros(self) -> dict[str, str]:
        return {
            "image_uri": self.image_uri,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "project_name": self.project,
            "entity_name": self.entity,
            "author": self.author,
        }


# ---------------------------------------------------------------------------------------------
# Names and labels


def short_hash(*parts: str, length: int = 6) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return digest[:length]


def dns_name(text: str, *, max_len: int = _DNS_LABEL_MAX, salt: str = "") -> str:
    """A DNS-1123 label from any text: lower case, digits kept, `-` for everything else.

    When the cleaned text is longer than `max_len` (or empty) it is cut and suffixed with a
    hash of the original, so distinct inputs stay distinct.
    """
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip("-")
    if cleaned and len(cleaned) <= max_len:
        return cleaned
    suffix = short_hash(text, salt)
    head = cleaned[: max_len - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}" if head else f"x-{suffix}"


def label_value(text: str) -> str:
    """A valid label value: at most 63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text))
    cleaned = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)
    if cleaned == str(text) and len(cleaned) <= _DNS_LABEL_MAX:
        return cleaned
    suffix = short_hash(str(text))
    head = re.sub(r"[^A-Za-z0-9]+$", "", cleaned[: _DNS_LABEL_MAX - len(suffix) - 1])
    return f"{head}-{suffix}" if head else suffix


def item_label(item_id: str) -> str:
    """The label value for a run-queue item id (ids are base64 and may hold `=`, `+`, `/`)."""
    return label_value(item_id)


def workload_name(run: RunInfo, item_id: str) -> str:
    """Deterministic per run-queue item: `<project>-<run id>-<hash of item id>`."""
    suffix = short_hash(item_id)
    base = dns_name(f"{run.project}-{run.run_id}", max_len=_DNS_LABEL_MAX - len(suffix) - 1)
    return f"{base}-{suffix}"


def identity_labels(settings: ManifestSettings) -> dict[str, str]:
    """The labels on every object this agent creates; also its watch/list selector."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_AGENT: label_value(settings.agent_identity)}


def selector(settings: ManifestSettings) -> str:
    return ",".join(f"{k}={v}" for k, v in identity_labels(settings).items())


# ---------------------------------------------------------------------------------------------
# Run spec reading


def _as_str(value: Any, key: str = "value") -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise ManifestError("run-spec", f"{key} must be a string")
    return str(value)


def run_info(run_spec: Mapping[str, Any]) -> RunInfo:
    if not isinstance(run_spec, Mapping):
        raise ManifestError("run-spec", "the run spec is not an object")
    run_id = _as_str(run_spec.get("run_id"), "run_id")
    if not run_id:
        raise ManifestError("run-spec", "the run spec has no run_id")
    entity = _as_str(run_spec.get("entity"), "entity")
    project = _as_str(run_spec.get("project"), "project").lower()
    if not entity or not project:
        raise ManifestError("run-spec", "the run spec needs both entity and project")
    docker = run_spec.get("docker") or {}
    image = _as_str(docker.get("docker_image") if isinstance(docker, Mapping) else None, "docker.docker_image")
    image = image or _as_str(run_spec.get("image_uri"), "image_uri")
    return RunInfo(
        run_id=run_id,
        entity=entity,
        project=project,
        run_name=_as_str(run_spec.get("name"), "name"),
        author=_as_str(run_spec.get("author"), "author"),
        image_uri=image,
    )


def kubernetes_args(run_spec: Mapping[str, Any]) -> dict[str, Any]:
    resource_args = run_spec.get("resource_args") or {}
    if not isinstance(resource_args, Mapping):
        raise ManifestError("resource-args", "resource_args is not an object")
    config = resource_args.get("kubernetes") or {}
    if not isinstance(config, Mapping):
        raise ManifestError("resource-args", "resource_args.kubernetes is not an object")
    return copy.deepcopy(dict(config))


def expand_macros(value: Any, macros: Mapping[str, str]) -> Any:
    """Replace `${name}` for the documented macros in every string leaf; keys and unknown names stay."""
    if isinstance(value, str):
        return _MACRO_RE.sub(lambda m: macros[m.group(1)] if m.group(1) in macros else m.group(0), value)
    if isinstance(value, list):
        return [expand_macros(v, macros) for v in value]
    if isinstance(value, dict):
        return {k: expand_macros(v, macros) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------
# Walking pod templates


def pod_templates(obj: Any) -> Iterator[dict[str, Any]]:
    """Every dict with a `spec` holding a `containers` list: Job templates, Kubeflow replica
    templates, Volcano task templates, JobSet's nested Job templates, bare pods."""
    if isinstance(obj, dict):
        spec = obj.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("containers"), list):
            yield obj
        for value in obj.values():
            yield from pod_templates(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from pod_templates(value)


def _containers(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in _CONTAINER_LISTS:
        for container in pod_spec.get(key) or []:
            if isinstance(container, dict):
                yield key, container


# ---------------------------------------------------------------------------------------------
# Shape: the fields the agent reads or writes must have the types Kubernetes gives them


def _expect(value: Any, kind: type, where: str) -> None:
    if value is not None and not isinstance(value, kind):
        name = "an object" if kind is dict else "a list" if kind is list else kind.__name__
        raise ManifestError("shape", f"{where} must be {name}")


def _check_meta(meta: Any, where: str) -> None:
    _expect(meta, dict, f"{where}.metadata")
    if isinstance(meta, dict):
        for key in ("labels", "annotations"):
            _expect(meta.get(key), dict, f"{where}.metadata.{key}")
            for k, v in (meta.get(key) or {}).items():
                if isinstance(v, dict | list):
                    raise ManifestError("shape", f"{where}.metadata.{key}.{k} must be a string")
        if meta.get("name") is not None and not isinstance(meta["name"], str | int):
            raise ManifestError("shape", f"{where}.metadata.name must be a string")


def check_shape(obj: Any, where: str) -> None:
    """Refuse wrongly typed fields in the parts of pod templates the agent reads and writes."""
    for tmpl in pod_templates(obj):
        _check_meta(tmpl.get("metadata"), where)
        pod = tmpl["spec"]
        for key in ("volumes", "initContainers", "ephemeralContainers", "imagePullSecrets"):
            _expect(pod.get(key), list, f"{where} pod spec {key}")
        _expect(pod.get("securityContext"), dict, f"{where} pod spec securityContext")
        pod_sc = pod.get("securityContext") or {}
        _expect(pod_sc.get("sysctls"), list, f"{where} pod securityContext.sysctls")
        for key in ("seccompProfile", "appArmorProfile", "seLinuxOptions", "windowsOptions"):
            _expect(pod_sc.get(key), dict, f"{where} pod securityContext.{key}")
        for vol in pod.get("volumes") or []:
            _expect(vol, dict, f"{where} volume")
        for key in _CONTAINER_LISTS:
            for i, c in enumerate(pod.get(key) or []):
                cwhere = f"{where} {key}[{i}]"
                _expect(c, dict, cwhere)
                for field_name in ("env", "ports", "args", "command", "envFrom", "volumeMounts"):
                    _expect(c.get(field_name), list, f"{cwhere}.{field_name}")
                for e in (c.get("env") or []) + (c.get("ports") or []):
                    _expect(e, dict, f"{cwhere} env/ports entry")
                if c.get("image") is not None and not isinstance(c["image"], str):
                    raise ManifestError("shape", f"{cwhere}.image must be a string")
                if c.get("name") is not None and not isinstance(c["name"], str):
                    raise ManifestError("shape", f"{cwhere}.name must be a string")
                _expect(c.get("securityContext"), dict, f"{cwhere}.securityContext")
                sc = c.get("securityContext") or {}
                _expect(sc.get("capabilities"), dict, f"{cwhere}.securityContext.capabilities")
                for key2 in ("add", "drop"):
                    _expect((sc.get("capabilities") or {}).get(key2), list,
                            f"{cwhere}.securityContext.capabilities.{key2}")
                for key2 in ("seccompProfile", "appArmorProfile", "seLinuxOptions", "windowsOptions"):
                    _expect(sc.get(key2), dict, f"{cwhere}.securityContext.{key2}")


# ---------------------------------------------------------------------------------------------
# Policy


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _where(kind: str, name: str) -> str:
    return f"{kind} {name!r}" if name else kind


def check_pod_spec(pod_spec: Mapping[str, Any], settings: ManifestSettings, where: str) -> None:
    """Refuse a pod spec that breaks the configured Pod Security Standards level or secure_mode."""
    level = settings.security_level
    if settings.secure_mode:
        for key in ("hostPID", "hostIPC", "hostNetwork"):
            if key in pod_spec:
                raise ManifestError("secure-mode", f"{where}: {key} is not allowed with secure_mode")
        if pod_spec.get("initContainers"):
            raise ManifestError("secure-mode", f"{where}: initContainers are not allowed with secure_mode")
        for _, c in _containers(pod_spec):
            if "command" in c:
                raise ManifestError("secure-mode",
                                    f"{where}: container {c.get('name', '')!r} sets command, "
                                    "which secure_mode forbids")
    if level == "privileged":
        return
    rule = f"pod-security-{level}"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if _truthy(pod_spec.get(key)):
            raise ManifestError(rule, f"{where}: {key} is not allowed (host namespaces)")
    sa = pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount")
    if sa and sa != "default" and sa not in settings.allowed_service_accounts:
        raise ManifestError(rule, f"{where}: serviceAccountName {sa!r} is not allowed; workloads run "
                                  "as the namespace's default service account")
    for vol in pod_spec.get("volumes") or []:
        if not isinstance(vol, dict):
            continue
        if "hostPath" in vol:
            raise ManifestError(rule, f"{where}: volume {vol.get('name', '')!r} is a hostPath volume")
        if level == "restricted":
            kinds = [k for k in vol if k != "name"]
            bad = [k for k in kinds if k not in _RESTRICTED_VOLUMES]
            if bad:
                raise ManifestError(rule, f"{where}: volume {vol.get('name', '')!r} of type {bad[0]} is not "
                                          f"allowed (allowed: {', '.join(sorted(_RESTRICTED_VOLUMES))})")
    pod_sc = pod_spec.get("securityContext") or {}
    _check_security_context(pod_sc, rule, where, level)
    for sysctl in pod_sc.get("sysctls") or []:
        name = sysctl.get("name", "") if isinstance(sysctl, dict) else ""
        if name not in _SAFE_SYSCTLS:
            raise ManifestError(rule, f"{where}: sysctl {name!r} is not in the safe set")
    for _, c in _containers(pod_spec):
        cwhere = f"{where} container {c.get('name', '')!r}"
        sc = c.get("securityContext") or {}
        if _truthy(sc.get("privileged")):
            raise ManifestError(rule, f"{cwhere}: privileged containers are not allowed")
        _check_security_context(sc, rule, cwhere, level)
        added = (sc.get("capabilities") or {}).get("add") or []
        allowed = {"NET_BIND_SERVICE"} if level == "restricted" else _BASELINE_CAPS
        for cap in added:
            if str(cap).upper().removeprefix("CAP_") not in allowed:
                raise ManifestError(rule, f"{cwhere}: adding capability {cap} is not allowed "
                                          f"(allowed: {', '.join(sorted(allowed))})")
        if level == "restricted":
            if sc.get("allowPrivilegeEscalation") is True:
                raise ManifestError(rule, f"{cwhere}: allowPrivilegeEscalation must be false")
            if sc.get("runAsNonRoot") is False or (
                    sc.get("runAsNonRoot") is None and pod_sc.get("runAsNonRoot") is False):
                raise ManifestError(rule, f"{cwhere}: runAsNonRoot must not be false")
        for port in c.get("ports") or []:
            if isinstance(port, dict) and port.get("hostPort"):
                raise ManifestError(rule, f"{cwhere}: hostPort {port['hostPort']} is not allowed")


def _check_security_context(sc: Mapping[str, Any], rule: str, where: str, level: str) -> None:
    if _truthy((sc.get("windowsOptions") or {}).get("hostProcess")):
        raise ManifestError(rule, f"{where}: Windows HostProcess is not allowed")
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        raise ManifestError(rule, f"{where}: seccompProfile Unconfined is not allowed")
    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor == "Unconfined":
        raise ManifestError(rule, f"{where}: appArmorProfile Unconfined is not allowed")
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        raise ManifestError(rule, f"{where}: custom seLinuxOptions are not allowed")
    if sc.get("procMount") not in (None, "Default"):
        raise ManifestError(rule, f"{where}: procMount {sc.get('procMount')} is not allowed")
    if level == "restricted" and sc.get("runAsUser") == 0:
        raise ManifestError(rule, f"{where}: runAsUser 0 is not allowed")


def _check_annotations(meta: Mapping[str, Any], settings: ManifestSettings, where: str) -> None:
    if settings.security_level == "privileged":
        return
    for key, value in (meta.get("annotations") or {}).items():
        low = str(key).lower()
        if ("apparmor" in low or "seccomp" in low) and "unconfined" in str(value).lower():
            raise ManifestError(f"pod-security-{settings.security_level}",
                                f"{where}: annotation {key} unconfined is not allowed")


def apply_security_defaults(pod_spec: dict[str, Any], settings: ManifestSettings) -> None:
    """Fill the restricted container securityContext fields the config left unset; keep the rest."""
    pod_sc = pod_spec.get("securityContext") or {}
    if settings.security_level == "restricted" and "runAsNonRoot" not in pod_sc and not any(
            "runAsNonRoot" in (c.get("securityContext") or {}) for _, c in _containers(pod_spec)):
        pod_spec["securityContext"] = {**pod_sc, "runAsNonRoot": True}
    for _, c in _containers(pod_spec):
        sc = c.get("securityContext")
        if not isinstance(sc, dict):
            sc = {}
        if "allowPrivilegeEscalation" not in sc and not _truthy(sc.get("privileged")):
            sc["allowPrivilegeEscalation"] = False
        caps = sc.get("capabilities")
        if not isinstance(caps, dict):
            caps = {}
        if "drop" not in caps:
            caps["drop"] = ["ALL"]
        sc["capabilities"] = caps
        if "seccompProfile" not in sc and "seccompProfile" not in pod_sc:
            sc["seccompProfile"] = {"type": "RuntimeDefault"}
        c["securityContext"] = sc


# ---------------------------------------------------------------------------------------------
# Env vars


def _chunked(name: str, payload: str) -> list[dict[str, Any]]:
    if len(payload) <= _ENV_CHUNK:
        return [{"name": name, "value": payload}]
    return [{"name": f"{name}_{i}", "value": payload[o:o + _ENV_CHUNK]}
            for i, o in enumerate(range(0, len(payload), _ENV_CHUNK))]


def run_env(run_spec: Mapping[str, Any], run: RunInfo, *, item_id: str, queue: str,
            settings: ManifestSettings) -> list[dict[str, Any]]:
    """The env vars a launched container gets; the API key only as a secretKeyRef."""
    overrides = run_spec.get("overrides") or {}
    env: list[dict[str, Any]] = [
        {"name": "WANDB_BASE_URL", "value": settings.base_url},
        {"name": "WANDB_API_KEY",
         "valueFrom": {"secretKeyRef": {"name": settings.api_key_secret, "key": "password"}}},
    ]
    if run.project:
        env.append({"name": "WANDB_PROJECT", "value": run.project})
    env += [
        {"name": "WANDB_ENTITY", "value": run.entity},
        {"name": "WANDB_LAUNCH", "value": "True"},
        {"name": "WANDB_RUN_ID", "value": run.run_id},
    ]
    if run.image_uri:
        env.append({"name": "WANDB_DOCKER", "value": run.image_uri})
    if run.run_name:
        env.append({"name": "WANDB_NAME", "value": run.run_name})
    if run.author:
        env.append({"name": "WANDB_USERNAME", "value": run.author})
    sweep_id = run_spec.get("sweep_id")
    if sweep_id and isinstance(sweep_id, str):
        env.append({"name": "WANDB_SWEEP_ID", "value": sweep_id})
    resume = run_spec.get("_resume_count")
    if isinstance(resume, int | float | str) and str(resume).strip().lstrip("-").isdigit() and int(resume) > 0:
        env.append({"name": "WANDB_RESUME", "value": "allow"})
    env += [
        {"name": "WANDB_LAUNCH_QUEUE_NAME", "value": queue},
        {"name": "WANDB_LAUNCH_QUEUE_ENTITY", "value": settings.queue_entity or run.entity},
        {"name": "WANDB_LAUNCH_TRACE_ID", "value": item_id},
    ]
    run_config = overrides.get("run_config") if isinstance(overrides, Mapping) else None
    if run_config:
        env += _chunked("WANDB_CONFIG", json.dumps(run_config))
    files = overrides.get("files") if isinstance(overrides, Mapping) else None
    env += _chunked("WANDB_LAUNCH_FILE_OVERRIDES", json.dumps(files or {}))
    artifacts = dict(overrides.get("artifacts") or {}) if isinstance(overrides, Mapping) else {}
    if run_spec.get("job"):
        artifacts = {"_wandb_job": run_spec["job"], **artifacts}
    env += _chunked("WANDB_ARTIFACTS", json.dumps(artifacts))
    return env


def _merge_env(container: dict[str, Any], env: list[dict[str, Any]]) -> None:
    ours = {e["name"] for e in env}
    kept = [e for e in container.get("env") or [] if isinstance(e, dict) and e.get("name") not in ours]
    container["env"] = kept + copy.deepcopy(env)


# ---------------------------------------------------------------------------------------------
# Building


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
                  args: list[str] | None, command: list[str] | None, job_defaults: bool) -> None:
    templates = list(pod_templates(obj))
    if not templates:
        raise ManifestError("containers", f"{where} has no pod template with containers")
    for tmpl in templates:
        tmeta = tmpl.setdefault("metadata", {})
        _check_annotations(tmeta, settings, where)
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
        for i, c in enumerate(containers):
            if not c.get("image"):
                raise ManifestError("image", f"{where}: container {c.get('name', i)!r} has no image "
                                             "(use ${image_uri} or set docker_image on the run)")
        for _, c in _containers(pod_spec):
            _merge_env(c, env)
        check_pod_spec(pod_spec, settings, where)
        apply_security_defaults(pod_spec, settings)


def _user_name(meta: Mapping[str, Any]) -> str | None:
    name = meta.get("name")
    return dns_name(str(name)) if name else None


def build_workload(run_spec: Mapping[str, Any], *, item_id: str, queue: str,
                   settings: ManifestSettings) -> list[dict[str, Any]]:
    """The objects to create for one run-queue item, in creation order; the workload is last.

    Raises ManifestError (rule, message) for anything the agent refuses.
    """
    if settings.security_level not in SECURITY_LEVELS:
        raise ManifestError("security-level", f"security level {settings.security_level!r} is not one of "
                                              f"{', '.join(SECURITY_LEVELS)}")
    run = run_info(run_spec)
    overrides = run_spec.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise ManifestError("overrides", "overrides must be an object")
    args = _str_list(overrides.get("args"), "overrides.args")
    command = _str_list(overrides.get("entry_point"), "overrides.entry_point")
    if settings.secure_mode and command:
        raise ManifestError("secure-mode", "overrides.entry_point is not allowed with secure_mode")
    macros = run.macros()
    config = expand_macros(kubernetes_args(run_spec), macros)
    namespace = resolve_namespace(config, settings)
    for key in _DIRECTIVE_KEYS:
        config.pop(key, None)

    _check_meta(config.get("metadata"), "resource_args.kubernetes")
    _expect(config.get("spec"), dict, "resource_args.kubernetes.spec")
    check_shape(config, "resource_args.kubernetes")
    api_version = str(config.get("apiVersion") or "batch/v1")
    is_job = api_version in JOB_API_VERSIONS
    kind = str(config.get("kind") or ("Job" if is_job else ""))
    if not kind:
        raise ManifestError("kind", f"a custom resource ({api_version}) needs a kind")
    if is_job and kind != "Job":
        raise ManifestError("kind", f"{api_version} objects launched by the agent must be Jobs, not {kind}")

    env = run_env(run_spec, run, item_id=item_id, queue=queue, settings=settings)
    annotations = _annotation_set(run, item_id, queue)
    objs: list[dict[str, Any]] = []

    services = run_spec.get("additional_services") or []
    if not isinstance(services, list):
        raise ManifestError("additional-services", "additional_services must be a list")
    for i, service in enumerate(services):
        aux = expand_macros(copy.deepcopy((service or {}).get("config") if isinstance(service, Mapping)
                                          else None), macros)
        if not isinstance(aux, dict) or not aux.get("kind") or not aux.get("apiVersion"):
            raise ManifestError("additional-services",
                                f"additional_services[{i}].config needs apiVersion and kind")
        _check_meta(aux.get("metadata"), f"additional_services[{i}]")
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
            _check_annotations(tmpl.get("metadata") or {}, settings, where)
            tmpl.setdefault("metadata", {})["labels"] = {**(tmpl["metadata"].get("labels") or {}),
                                                         **pod_labels}
            for _, c in _containers(tmpl["spec"]):
                _merge_env(c, [e for e in env if e["name"].startswith("WANDB_CONFIG")] + env[:2])
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
    _check_annotations(meta, settings, kind)
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
                  image_forced=bool(run.image_uri) and is_job, args=args, command=command,
                  job_defaults=is_job)
    objs.append(obj)
    return objs


def workload_of(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The main workload among build_workload's objects (the last one)."""
    return objs[-1]
