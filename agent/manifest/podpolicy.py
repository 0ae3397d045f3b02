"""Pod templates: walking them, checking the types of the fields the agent touches, the Pod Security
Standards level and secure_mode, and the security defaults written where the config is silent."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from agent.manifest.errors import ManifestError
from agent.manifest.settings import ManifestSettings

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
            expect(vol, dict, f"{where} volume")
        for key in _CONTAINER_LISTS:
            for i, c in enumerate(pod.get(key) or []):
                cwhere = f"{where} {key}[{i}]"
                expect(c, dict, cwhere)
                for field_name in ("env", "ports", "args", "command", "envFrom", "volumeMounts"):
                    expect(c.get(field_name), list, f"{cwhere}.{field_name}")
                for e in (c.get("env") or []) + (c.get("ports") or []):
                    expect(e, dict, f"{cwhere} env/ports entry")
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
        for _, c in containers_of(pod_spec):
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
    for _, c in containers_of(pod_spec):
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


def check_annotations(meta: Mapping[str, Any], settings: ManifestSettings, where: str) -> None:
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
            "runAsNonRoot" in (c.get("securityContext") or {}) for _, c in containers_of(pod_spec)):
        pod_spec["securityContext"] = {**pod_sc, "runAsNonRoot": True}
    for _, c in containers_of(pod_spec):
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
