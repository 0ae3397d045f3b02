"""Pod specs for the Pod Security Standards differential test: each one is valid for the API server
(it is admitted in a namespace without a PodSecurity level) and probes one rule or one edge of a
rule at baseline and restricted."""

from __future__ import annotations

import copy
from typing import Any

IMAGE = "registry.local/run:1"
GOOD_SC = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
ALLOWED_SECRETS = ("creds", "proj")


def c(name: str = "main", **sc: Any) -> dict[str, Any]:
    """A container; keyword arguments become its securityContext (None: no securityContext)."""
    out: dict[str, Any] = {"name": name, "image": IMAGE}
    if sc:
        out["securityContext"] = {k: v for k, v in sc.items() if v is not None}
    return out


def good(name: str = "main", **extra: Any) -> dict[str, Any]:
    """A container that meets restricted when the pod sets runAsNonRoot and seccomp."""
    out = {"name": name, "image": IMAGE, "securityContext": copy.deepcopy(GOOD_SC)}
    out["securityContext"].update(extra)
    return out


def pod(*containers: dict[str, Any], sc: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
        restricted_pod: bool = True, **spec: Any) -> dict[str, Any]:
    """{metadata, spec}; restricted_pod adds runAsNonRoot and seccomp RuntimeDefault at pod level."""
    pod_sc = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}} if restricted_pod else {}
    pod_sc.update(sc or {})
    pod_sc = {k: v for k, v in pod_sc.items() if v is not None}
    body: dict[str, Any] = {"containers": list(containers) or [good()], **spec}
    if pod_sc:
        body["securityContext"] = pod_sc
    return {"metadata": copy.deepcopy(meta or {}), "spec": body}


def vol(name: str, **source: Any) -> dict[str, Any]:
    return {"name": name, **source}


AA = "container.apparmor.security.beta.kubernetes.io/main"

CORPUS: list[tuple[str, dict[str, Any]]] = [
    # the baselines
    ("restricted-compliant", pod()),
    ("bare container, nothing set", pod(c(), restricted_pod=False)),
    ("bare container with pod runAsNonRoot only", pod(c(), sc={"runAsNonRoot": True, "seccompProfile": None},
                                                      restricted_pod=False)),
    # capabilities
    ("drop NET_RAW only", pod(good(capabilities={"drop": ["NET_RAW"]}))),
    ("drop empty list", pod(good(capabilities={"drop": []}))),
    ("drop lower-case all", pod(good(capabilities={"drop": ["all"]}))),
    ("drop ALL and NET_RAW", pod(good(capabilities={"drop": ["NET_RAW", "ALL"]}))),
    ("capabilities object empty", pod(good(capabilities={}))),
    ("add NET_BIND_SERVICE", pod(good(capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}))),
    ("add CHOWN", pod(good(capabilities={"drop": ["ALL"], "add": ["CHOWN"]}))),
    ("add SYS_ADMIN", pod(good(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}))),
    ("add NET_RAW", pod(good(capabilities={"drop": ["ALL"], "add": ["NET_RAW"]}))),
    ("add CAP_CHOWN spelled with prefix", pod(good(capabilities={"drop": ["ALL"], "add": ["CAP_CHOWN"]}))),
    ("add lower-case chown", pod(good(capabilities={"drop": ["ALL"], "add": ["chown"]}))),
    ("init container without drop ALL", pod(good(), initContainers=[good("init", capabilities={"drop": []})])),
    ("init container adds SYS_PTRACE", pod(good(), initContainers=[good("init", capabilities={
        "drop": ["ALL"], "add": ["SYS_PTRACE"]})])),
    # privilege escalation, privileged
    ("allowPrivilegeEscalation unset", pod({"name": "main", "image": IMAGE,
                                            "securityContext": {"capabilities": {"drop": ["ALL"]}}})),
    ("allowPrivilegeEscalation true", pod(good(allowPrivilegeEscalation=True))),
    ("privileged container", pod(c(privileged=True), restricted_pod=False)),
    ("privileged false", pod(good(privileged=False))),
    # runAsNonRoot and runAsUser
    ("runAsNonRoot on one container of two", pod(good("a", runAsNonRoot=True), good("b"),
                                                 sc={"runAsNonRoot": None}, restricted_pod=True)),
    ("runAsNonRoot on every container, not the pod", pod(good("a", runAsNonRoot=True),
                                                         good("b", runAsNonRoot=True), sc={"runAsNonRoot": None})),
    ("pod runAsNonRoot false", pod(sc={"runAsNonRoot": False})),
    ("pod true, container false", pod(good(runAsNonRoot=False))),
    ("pod false, container true", pod(good(runAsNonRoot=True), sc={"runAsNonRoot": False})),
    ("runAsUser 0 on the pod", pod(sc={"runAsUser": 0})),
    ("runAsUser 0 on a container", pod(good(runAsUser=0))),
    ("runAsUser 1000", pod(good(runAsUser=1000), sc={"runAsGroup": 1000, "fsGroup": 1000})),
    ("user namespace with root user", pod(good(runAsUser=0), sc={"runAsNonRoot": None}, hostUsers=False)),
    # host namespaces and ports
    ("hostNetwork", pod(hostNetwork=True)),
    ("hostPID", pod(hostPID=True)),
    ("hostIPC", pod(hostIPC=True)),
    ("host namespaces false", pod(hostNetwork=False, hostPID=False, hostIPC=False)),
    ("hostPort 8080", pod(good(**{}) | {"ports": [{"containerPort": 8080, "hostPort": 8080}]})),
    ("containerPort only", pod(good() | {"ports": [{"containerPort": 8080}]})),
    ("hostPort 0", pod(good() | {"ports": [{"containerPort": 8080, "hostPort": 0}]})),
    ("probe with host", pod(good() | {"readinessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}}})),
    ("probe without host", pod(good() | {"livenessProbe": {"tcpSocket": {"port": 80}}})),
    ("lifecycle hook with host", pod(good() | {"lifecycle": {"preStop": {"httpGet": {"port": 80,
                                                                                      "host": "example.org"}}}})),
    # volumes
    ("hostPath volume", pod(volumes=[vol("h", hostPath={"path": "/etc"})])),
    ("emptyDir and configMap", pod(volumes=[vol("a", emptyDir={}), vol("b", configMap={"name": "cfg"})])),
    ("allowlisted secret volume", pod(volumes=[vol("s", secret={"secretName": "creds"})])),
    ("projected volume", pod(volumes=[vol("p", projected={"sources": [
        {"serviceAccountToken": {"path": "token"}}, {"secret": {"name": "proj"}}]})])),
    ("downwardAPI volume", pod(volumes=[vol("d", downwardAPI={"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]})])),
    ("pvc volume", pod(volumes=[vol("v", persistentVolumeClaim={"claimName": "data"})])),
    ("ephemeral volume", pod(volumes=[vol("e", ephemeral={"volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}})])),
    ("csi volume", pod(volumes=[vol("k", csi={"driver": "secrets-store.csi.k8s.io"})])),
    ("image volume", pod(volumes=[vol("i", image={"reference": IMAGE, "pullPolicy": "IfNotPresent"})])),
    ("nfs volume", pod(volumes=[vol("n", nfs={"server": "nfs.example.org", "path": "/"})])),
    ("iscsi volume", pod(volumes=[vol("i", iscsi={"targetPortal": "10.0.0.1:3260", "iqn": "iqn.2001-04.com.x:t",
                                                    "lun": 0})])),
    ("volume without a source (defaults to emptyDir)", pod(volumes=[vol("x")])),
    # sysctls
    ("safe sysctl", pod(sc={"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]})),
    ("sysctl added in 1.32", pod(sc={"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"}]})),
    ("sysctl added in 1.37", pod(sc={"sysctls": [{"name": "net.ipv4.tcp_notsent_lowat", "value": "16384"}]})),
    ("unsafe sysctl", pod(sc={"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]})),
    ("safe sysctl written with slashes", pod(sc={"sysctls": [{"name": "net/ipv4/tcp_syncookies", "value": "1"}]})),
    # seccomp
    ("seccomp unset everywhere", pod(good(), sc={"seccompProfile": None})),
    ("seccomp on the container only", pod(good(seccompProfile={"type": "RuntimeDefault"}),
                                          sc={"seccompProfile": None})),
    ("seccomp Unconfined on the pod", pod(sc={"seccompProfile": {"type": "Unconfined"}})),
    ("seccomp Unconfined on a container", pod(good(seccompProfile={"type": "Unconfined"}))),
    ("seccomp Localhost", pod(sc={"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}})),
    ("seccomp Unconfined pod, RuntimeDefault container", pod(good(seccompProfile={"type": "RuntimeDefault"}),
                                                             sc={"seccompProfile": {"type": "Unconfined"}})),
    # AppArmor
    ("AppArmor Unconfined field on the pod", pod(sc={"appArmorProfile": {"type": "Unconfined"}})),
    ("AppArmor RuntimeDefault on a container", pod(good(appArmorProfile={"type": "RuntimeDefault"}))),
    ("AppArmor Unconfined on a container", pod(good(appArmorProfile={"type": "Unconfined"}))),
    ("AppArmor Localhost", pod(sc={"appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-x"}})),
    ("AppArmor annotation unconfined", pod(meta={"annotations": {AA: "unconfined"}})),
    ("AppArmor annotation runtime/default", pod(meta={"annotations": {AA: "runtime/default"}})),
    ("AppArmor annotation localhost", pod(meta={"annotations": {AA: "localhost/k8s-x"}})),
    ("seccomp annotation unconfined on the pod", pod(good(seccompProfile={"type": "RuntimeDefault"}),
                                                     sc={"seccompProfile": None}, meta={"annotations": {
                                                         "seccomp.security.alpha.kubernetes.io/pod": "unconfined"}})),
    # SELinux
    ("SELinux container_t", pod(sc={"seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"}})),
    ("SELinux container_engine_t", pod(good(seLinuxOptions={"type": "container_engine_t"}))),
    ("SELinux spc_t", pod(sc={"seLinuxOptions": {"type": "spc_t"}})),
    ("SELinux user set", pod(good(seLinuxOptions={"user": "system_u"}))),
    ("SELinux role set", pod(sc={"seLinuxOptions": {"role": "system_r"}})),
    # procMount
    ("procMount Default", pod(good(procMount="Default"))),
    ("procMount Unmasked", pod(good(procMount="Unmasked"), hostUsers=False)),
    # Windows
    ("Windows hostProcess", pod({"name": "main", "image": IMAGE, "securityContext": {
        "windowsOptions": {"hostProcess": True, "runAsUserName": "NT AUTHORITY\\SYSTEM"}}},
        sc={"runAsNonRoot": None, "seccompProfile": None}, restricted_pod=False, hostNetwork=True,
        os={"name": "windows"})),
    ("Windows pod without Linux fields", pod({"name": "main", "image": IMAGE}, sc={"runAsNonRoot": True,
                                             "seccompProfile": None}, os={"name": "windows"})),
    ("Windows pod runAsNonRoot unset", pod({"name": "main", "image": IMAGE}, restricted_pod=False,
                                           os={"name": "windows"})),
    ("Linux os field", pod(os={"name": "linux"})),
    # ephemeral containers (checked through the pods/ephemeralcontainers subresource)
    ("ephemeral container privileged", pod(ephemeralContainers=[{"name": "debug", "image": IMAGE,
                                                                 "securityContext": {"privileged": True}}])),
    ("ephemeral container without drop ALL", pod(ephemeralContainers=[{"name": "debug", "image": IMAGE}])),
    ("ephemeral container compliant", pod(ephemeralContainers=[{"name": "debug", "image": IMAGE,
                                                                "securityContext": copy.deepcopy(GOOD_SC)}])),
]
