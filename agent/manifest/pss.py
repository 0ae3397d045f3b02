"""The Pod Security Standards as the API server's PodSecurity admission enforces them (policy
version `latest` of Kubernetes 1.37): `violations(pod_metadata, pod_spec, level)` lists what a pod
breaks at `baseline` or `restricted`, nothing at `privileged`.

Every rule compares values exactly as the admission plugin does: capability names and sysctl
names are case- and spelling-sensitive (`CAP_SYS_ADMIN`, `all` and `net/ipv4/tcp_syncookies`
are not the names the standard allows), `allowPrivilegeEscalation`, `runAsNonRoot`,
`capabilities.drop: [ALL]` and the seccomp type must be set explicitly under `restricted`, a
volume without a source counts as the `emptyDir` the API server defaults it to, Windows pods
(`os.name: windows`) are exempt from the Linux-only restricted rules, and pods in a user
namespace (`hostUsers: false`) from `runAsNonRoot`, `runAsUser` and the baseline `procMount` rule.

The input is a pod spec as JSON (dicts and lists); a field of the wrong type raises ManifestError
with rule `shape`, since the API server would refuse to decode it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from agent.manifest.errors import ManifestError

LEVELS = ("privileged", "baseline", "restricted")

BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat",
})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim",
    "projected", "secret",
})
_GOOD_PROFILE_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) and kind is int:
        raise ManifestError("shape", f"{where} must be an integer")
    if not isinstance(value, kind):
        names = {dict: "an object", list: "a list", bool: "true or false", int: "an integer", str: "a string"}
        raise ManifestError("shape", f"{where} must be {names.get(kind, 'of another type')}")  # type: ignore[call-overload]
    return value


def _obj(parent: Mapping[str, Any] | None, key: str, where: str) -> dict[str, Any]:
    if not parent:
        return {}
    return _typed(parent.get(key), dict, f"{where}.{key}") or {}


def _list(parent: Mapping[str, Any] | None, key: str, where: str) -> list[Any]:
    if not parent:
        return []
    return _typed(parent.get(key), list, f"{where}.{key}") or []


def _flag(parent: Mapping[str, Any], key: str, where: str) -> bool | None:
    return _typed(parent.get(key), bool, f"{where}.{key}")


def _str(parent: Mapping[str, Any], key: str, where: str) -> str:
    return _typed(parent.get(key), str, f"{where}.{key}") or ""


def containers(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, container) for init, regular and ephemeral containers, in the admission's order."""
    for key in CONTAINER_LISTS:
        for i, c in enumerate(_list(pod_spec, key, "spec")):
            where = f"{key}[{i}]"
            yield where, _typed(c, dict, where) or {}


def _name(where: str, c: Mapping[str, Any]) -> str:
    name = c.get("name")
    return f"container {name!r}" if isinstance(name, str) and name else where


def _is_windows(pod_spec: Mapping[str, Any]) -> bool:
    return _str(_obj(pod_spec, "os", "spec"), "name", "spec.os") == "windows"


def _user_namespace(pod_spec: Mapping[str, Any]) -> bool:
    return _flag(pod_spec, "hostUsers", "spec") is False


def _profile_type(sc: Mapping[str, Any], key: str, where: str) -> str | None:
    """The type of a seccomp/AppArmor profile object; None when the object is absent."""
    profile = _typed(sc.get(key), dict, f"{where}.{key}")
    if profile is None:
        return None
    return _str(profile, "type", f"{where}.{key}")


def violations(pod_metadata: Mapping[str, Any] | None, pod_spec: Mapping[str, Any], level: str) -> list[str]:
    """What the pod breaks at *level*, one line per rule; empty when the admission would let it in."""
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security Standards level {level!r}")
    if level == "privileged":
        return []
    meta = pod_metadata or {}
    pod_sc = _obj(pod_spec, "securityContext", "spec")
    found = _baseline(meta, pod_spec, pod_sc, restricted=level == "restricted")
    if level == "restricted":
        found += _restricted(pod_spec, pod_sc)
    return found


def check_types(pod_metadata: Mapping[str, Any] | None, pod_spec: Mapping[str, Any]) -> None:
    """ManifestError (rule `shape`) when a field any rule reads has the wrong JSON type."""
    violations(pod_metadata, pod_spec, "restricted")


def _baseline(meta: Mapping[str, Any], pod_spec: Mapping[str, Any], pod_sc: Mapping[str, Any], *,
              restricted: bool) -> list[str]:
    out: list[str] = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if _flag(pod_spec, key, "spec"):
            out.append(f"{key} is not allowed (host namespaces)")
    all_containers = list(containers(pod_spec))
    for where, c in all_containers:
        sc = _obj(c, "securityContext", where)
        who = _name(where, c)
        if _flag(sc, "privileged", f"{where}.securityContext"):
            out.append(f"privileged: {who} sets securityContext.privileged=true")
        if not restricted:  # restricted replaces this rule with its own capabilities rule
            added = _list(_obj(sc, "capabilities", f"{where}.securityContext"), "add", f"{where}.capabilities")
            bad = [str(cap) for cap in added if cap not in BASELINE_CAPABILITIES]
            if bad:
                out.append(f"non-default capabilities: {who} adds {', '.join(bad)}")
        for port in _list(c, "ports", where):
            host_port = _typed((_typed(port, dict, f"{where}.ports[]") or {}).get("hostPort"), int,
                               f"{where}.hostPort")
            if host_port:
                out.append(f"hostPort: {who} uses hostPort {host_port}")
        for probe_key in ("livenessProbe", "readinessProbe", "startupProbe"):
            out += _hosts(_obj(c, probe_key, where), f"{who} {probe_key}")
        lifecycle = _obj(c, "lifecycle", where)
        for hook in ("postStart", "preStop"):
            out += _hosts(_obj(lifecycle, hook, f"{where}.lifecycle"), f"{who} lifecycle.{hook}")
        proc_mount = _typed(sc.get("procMount"), str, f"{where}.securityContext.procMount")
        if proc_mount not in (None, "Default") and (restricted or not _user_namespace(pod_spec)):
            out.append(f"procMount: {who} sets securityContext.procMount={proc_mount}")
    for i, vol in enumerate(_list(pod_spec, "volumes", "spec")):
        vol = _typed(vol, dict, f"volumes[{i}]") or {}
        if vol.get("hostPath") is not None and not restricted:  # restricted: reported as a volume type
            out.append(f"hostPath volumes: volume {vol.get('name', i)!r}")
    out += _apparmor(meta, pod_sc, all_containers)
    out += _selinux(pod_sc, all_containers)
    if not restricted:  # restricted replaces the baseline seccomp rule with its own
        out += _seccomp_baseline(pod_sc, all_containers)
    for s in _list(pod_sc, "sysctls", "spec.securityContext"):
        name = _str(_typed(s, dict, "sysctls[]") or {}, "name", "sysctls[]")
        if name not in SAFE_SYSCTLS:
            out.append(f"forbidden sysctls: {name}")
    setters = []
    if _flag(_obj(pod_sc, "windowsOptions", "spec.securityContext"), "hostProcess", "windowsOptions"):
        setters.append("pod")
    for where, c in all_containers:
        sc = _obj(c, "securityContext", where)
        if _flag(_obj(sc, "windowsOptions", f"{where}.securityContext"), "hostProcess", "windowsOptions"):
            setters.append(_name(where, c))
    if setters:
        out.append(f"hostProcess: {' and '.join(setters)} set windowsOptions.hostProcess=true")
    return out


def _hosts(handler: Mapping[str, Any], who: str) -> list[str]:
    out = []
    for key in ("httpGet", "tcpSocket"):
        host = _str(_obj(handler, key, who), "host", f"{who}.{key}")
        if host:
            out.append(f"probe or lifecycle host: {who} {key}.host={host}")
    return out


def _apparmor(meta: Mapping[str, Any], pod_sc: Mapping[str, Any],
              all_containers: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = []
    pod_type = _profile_type(pod_sc, "appArmorProfile", "spec.securityContext")
    if pod_type is not None and pod_type not in _GOOD_PROFILE_TYPES:
        out.append(f"forbidden AppArmor profile: pod sets appArmorProfile.type={pod_type}")
    for where, c in all_containers:
        t = _profile_type(_obj(c, "securityContext", where), "appArmorProfile", f"{where}.securityContext")
        if t is not None and t not in _GOOD_PROFILE_TYPES:
            out.append(f"forbidden AppArmor profile: {_name(where, c)} sets appArmorProfile.type={t}")
    for key, value in sorted((_typed(meta.get("annotations"), dict, "metadata.annotations") or {}).items()):
        if str(key).startswith(APPARMOR_ANNOTATION_PREFIX):
            text = "" if value is None else str(value)
            if text and text != "runtime/default" and not text.startswith("localhost/"):
                out.append(f"forbidden AppArmor profile: annotation {key}={text}")
    return out


def _selinux(pod_sc: Mapping[str, Any], all_containers: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = []
    targets = [("pod", _typed(pod_sc.get("seLinuxOptions"), dict, "spec.securityContext.seLinuxOptions"))]
    for where, c in all_containers:
        sc = _obj(c, "securityContext", where)
        targets.append((_name(where, c), _typed(sc.get("seLinuxOptions"), dict, f"{where}.seLinuxOptions")))
    for who, opts in targets:
        if opts is None:
            continue
        bad = []
        if _str(opts, "type", "seLinuxOptions") not in SELINUX_TYPES:
            bad.append(f"type {opts['type']}")
        bad += [f"{key} may not be set" for key in ("user", "role") if _str(opts, key, "seLinuxOptions")]
        if bad:
            out.append(f"seLinuxOptions: {who} sets forbidden seLinuxOptions ({'; '.join(bad)})")
    return out


def _seccomp_baseline(pod_sc: Mapping[str, Any], all_containers: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = []
    t = _profile_type(pod_sc, "seccompProfile", "spec.securityContext")
    if t is not None and t not in _GOOD_PROFILE_TYPES:
        out.append(f"seccompProfile: pod sets seccompProfile.type={t}")
    for where, c in all_containers:
        t = _profile_type(_obj(c, "securityContext", where), "seccompProfile", f"{where}.securityContext")
        if t is not None and t not in _GOOD_PROFILE_TYPES:
            out.append(f"seccompProfile: {_name(where, c)} sets seccompProfile.type={t}")
    return out


def _restricted(pod_spec: Mapping[str, Any], pod_sc: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    windows = _is_windows(pod_spec)
    userns = _user_namespace(pod_spec)
    all_containers = list(containers(pod_spec))
    for i, vol in enumerate(_list(pod_spec, "volumes", "spec")):
        vol = _typed(vol, dict, f"volumes[{i}]") or {}
        sources = [k for k, v in vol.items() if k != "name" and v is not None]
        bad = [k for k in sources if k not in RESTRICTED_VOLUMES]
        if bad:
            out.append(f"restricted volume types: volume {vol.get('name', i)!r} uses {', '.join(bad)}")
    if not windows:
        for where, c in all_containers:
            sc = _obj(c, "securityContext", where)
            if _flag(sc, "allowPrivilegeEscalation", f"{where}.securityContext") is not False:
                out.append(f"allowPrivilegeEscalation != false: {_name(where, c)}")
        for where, c in all_containers:
            caps = _obj(_obj(c, "securityContext", where), "capabilities", f"{where}.securityContext")
            drop = _list(caps, "drop", f"{where}.capabilities")
            if "ALL" not in drop:
                out.append(f"unrestricted capabilities: {_name(where, c)} must drop ALL")
            bad = [str(cap) for cap in _list(caps, "add", f"{where}.capabilities") if cap != "NET_BIND_SERVICE"]
            if bad:
                out.append(f"unrestricted capabilities: {_name(where, c)} adds {', '.join(bad)}")
        out += _seccomp_restricted(pod_sc, all_containers)
    if not userns:
        out += _run_as(pod_sc, all_containers)
    return out


def _seccomp_restricted(pod_sc: Mapping[str, Any], all_containers: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = _seccomp_baseline(pod_sc, all_containers)
    if out:
        return out
    pod_type = _profile_type(pod_sc, "seccompProfile", "spec.securityContext")
    unset = [_name(where, c) for where, c in all_containers
             if _profile_type(_obj(c, "securityContext", where), "seccompProfile", where) is None]
    if pod_type is None and unset:
        out.append(f"seccompProfile: pod or {', '.join(unset)} must set seccompProfile.type to "
                   "RuntimeDefault or Localhost")
    return out


def _run_as(pod_sc: Mapping[str, Any], all_containers: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = []
    pod_non_root = _flag(pod_sc, "runAsNonRoot", "spec.securityContext")
    explicit = ["pod"] if pod_non_root is False else []
    implicit = []
    for where, c in all_containers:
        value = _flag(_obj(c, "securityContext", where), "runAsNonRoot", f"{where}.securityContext")
        if value is False:
            explicit.append(_name(where, c))
        elif value is None and pod_non_root is not True:
            implicit.append(_name(where, c))
    if explicit:
        out.append(f"runAsNonRoot != true: {' and '.join(explicit)} set runAsNonRoot=false")
    elif implicit:
        out.append(f"runAsNonRoot != true: pod or {', '.join(implicit)} must set runAsNonRoot=true")
    root = ["pod"] if _typed(pod_sc.get("runAsUser"), int, "spec.securityContext.runAsUser") == 0 else []
    for where, c in all_containers:
        sc = _obj(c, "securityContext", where)
        if _typed(sc.get("runAsUser"), int, f"{where}.securityContext.runAsUser") == 0:
            root.append(_name(where, c))
    if root:
        out.append(f"runAsUser=0: {' and '.join(root)} set runAsUser=0")
    return out
