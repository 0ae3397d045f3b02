"""Pod templates: walking them, checking the types of the fields the agent touches, the security
defaults written where the config is silent, then the Pod Security Standards level (`pss`), the
Secrets a pod may reference (`secretrefs`) and secure_mode on the result."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from agent.manifest import pss
from agent.manifest.errors import ManifestError
from agent.manifest.secretrefs import check_secret_refs
from agent.manifest.settings import ManifestSettings

_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


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


def containers_of(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in _CONTAINER_LISTS:
        for container in pod_spec.get(key) or []:
            if isinstance(container, dict):
                yield key, container




def expect(value: Any, kind: type, where: str) -> None:
    if value is not None and not isinstance(value, kind):
        name = "an object" if kind is dict else "a list" if kind is list else kind.__name__
        raise ManifestError("shape", f"{where} must be {name}")


def expect_item(value: Any, kind: type, where: str) -> None:
    """A list element: never null."""
    if value is None:
        raise ManifestError("shape", f"{where} must not be null")
    expect(value, kind, where)


def check_meta(meta: Any, where: str) -> None:
    expect(meta, dict, f"{where}.metadata")
    if isinstance(meta, dict):
        for key in ("labels", "annotations"):
            expect(meta.get(key), dict, f"{where}.metadata.{key}")
            for k, v in (meta.get(key) or {}).items():
                if isinstance(v, dict | list):
                    raise ManifestError("shape", f"{where}.metadata.{key}.{k} must be a string")
        if meta.get("name") is not None and not isinstance(meta["name"], str | int):
            raise ManifestError("shape", f"{where}.metadata.name must be a string")


def check_shape(obj: Any, where: str) -> None:
    """Refuse wrongly typed fields in the parts of pod templates the agent reads and writes."""
    for tmpl in pod_templates(obj):
        check_meta(tmpl.get("metadata"), where)
        pod = tmpl["spec"]
        for key in ("volumes", "initContainers", "ephemeralContainers", "imagePullSecrets"):
            expect(pod.get(key), list, f"{where} pod spec {key}")
        expect(pod.get("securityContext"), dict, f"{where} pod spec securityContext")
        pod_sc = pod.get("securityContext") or {}
        expect(pod_sc.get("sysctls"), list, f"{where} pod securityContext.sysctls")
        for key in ("seccompProfile", "appArmorProfile", "seLinuxOptions", "windowsOptions"):
            expect(pod_sc.get(key), dict, f"{where} pod securityContext.{key}")
        for vol in pod.get("volumes") or []:
            expect_item(vol, dict, f"{where} volume")
        for key in _CONTAINER_LISTS:
            for i, c in enumerate(pod.get(key) or []):
                cwhere = f"{where} {key}[{i}]"
                expect_item(c, dict, cwhere)
                for field_name in ("env", "ports", "args", "command", "envFrom", "volumeMounts"):
                    expect(c.get(field_name), list, f"{cwhere}.{field_name}")
                for e in (c.get("env") or []) + (c.get("ports") or []):
                    expect_item(e, dict, f"{cwhere} env/ports entry")
                for j, e in enumerate(c.get("env") or []):
                    if not isinstance(e.get("name"), str):
                        raise ManifestError("shape", f"{cwhere}.env[{j}].name must be a string")
                if c.get("image") is not None and not isinstance(c["image"], str):
                    raise ManifestError("shape", f"{cwhere}.image must be a string")
                if c.get("name") is not None and not isinstance(c["name"], str):
                    raise ManifestError("shape", f"{cwhere}.name must be a string")
                expect(c.get("securityContext"), dict, f"{cwhere}.securityContext")
                sc = c.get("securityContext") or {}
                expect(sc.get("capabilities"), dict, f"{cwhere}.securityContext.capabilities")
                for key2 in ("add", "drop"):
                    expect((sc.get("capabilities") or {}).get(key2), list,
                            f"{cwhere}.securityContext.capabilities.{key2}")
                for key2 in ("seccompProfile", "appArmorProfile", "seLinuxOptions", "windowsOptions"):
                    expect(sc.get(key2), dict, f"{cwhere}.securityContext.{key2}")


def check_user_pod(pod_spec: Mapping[str, Any], settings: ManifestSettings, where: str) -> None:
    """Refuse what a queue config or run spec wrote into a pod: ephemeral containers, what
    secure_mode forbids, a Secret off the allowlist, a service account other than the default."""
    if pod_spec.get("ephemeralContainers"):
        raise ManifestError("containers", f"{where}: ephemeralContainers cannot be set when a pod is created")
    if settings.secure_mode:
        for key in ("hostPID", "hostIPC", "hostNetwork"):
            if key in pod_spec:
                raise ManifestError("secure-mode", f"{where}: {key} is not allowed with secure_mode")
        if pod_spec.get("initContainers"):
            raise ManifestError("secure-mode", f"{where}: initContainers are not allowed with secure_mode")
        for _, c in containers_of(pod_spec):
            if "command" in c:
                raise ManifestError("secure-mode",
                                    f"{where}: container {c.get('name', '')!r} sets command, "
                                    "which secure_mode forbids")
    check_secret_refs(pod_spec, settings, where)
    level = settings.security_level
    if level == "privileged":
        return
    sa = pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount")
    if sa and sa != "default" and sa not in settings.allowed_service_accounts:
        raise ManifestError(f"pod-security-{level}", f"{where}: serviceAccountName {sa!r} is not allowed; "
                                                     "workloads run as the namespace's default service account")


def check_level(pod_meta: Mapping[str, Any] | None, pod_spec: Mapping[str, Any], settings: ManifestSettings,
                where: str) -> None:
    """Refuse a pod (template metadata and spec, as it will be submitted) that breaks the configured
    Pod Security Standards level, judged as the API server's PodSecurity admission judges it."""
    level = settings.security_level
    found = pss.violations(pod_meta, pod_spec, level)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ManifestError(f"pod-security-{level}", f"{where}: {found[0]}{more}")


def check_pod_spec(pod_meta: Mapping[str, Any] | None, pod_spec: Mapping[str, Any], settings: ManifestSettings,
                   where: str) -> None:
    """Both checks on one pod: what the user wrote, then the level."""
    check_user_pod(pod_spec, settings, where)
    check_level(pod_meta, pod_spec, settings, where)


def apply_security_defaults(pod_spec: dict[str, Any], settings: ManifestSettings) -> None:
    """Fill the securityContext fields the config left unset so that a pod the user did not harden
    meets the restricted standard; never change a value the user set.

    Containers get allowPrivilegeEscalation false (unless privileged), capabilities.drop [ALL] and
    seccomp RuntimeDefault (unless the pod sets one); under `restricted` the pod gets
    runAsNonRoot true when it does not say. Windows pods get none of the Linux-only fields, which
    the API server refuses for them.
    """
    pod_sc = pod_spec.get("securityContext") or {}
    windows = (pod_spec.get("os") or {}).get("name") == "windows"
    if settings.security_level == "restricted" and "runAsNonRoot" not in pod_sc and \
            pod_spec.get("hostUsers") is not False:
        pod_spec["securityContext"] = pod_sc = {**pod_sc, "runAsNonRoot": True}
    if windows:
        return
    for _, c in containers_of(pod_spec):
        sc = c.get("securityContext")
        if not isinstance(sc, dict):
            sc = {}
        if "allowPrivilegeEscalation" not in sc and sc.get("privileged") is not True:
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
