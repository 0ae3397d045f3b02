"""Assertions over rendered chart objects, shared by the chart tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "launch-agent"
CI_FILES = sorted((CHART / "ci").glob("*.yaml"))
BASIC = CHART / "ci" / "basic-values.yaml"
OFFICIAL_STYLE = REPO / "tests" / "fixtures" / "official-style-values.yaml"
APP_VERSION = next(line.split(":", 1)[1].strip().strip('"') for line in (CHART / "Chart.yaml").read_text().splitlines()
                   if line.startswith("appVersion:"))
API_KEY = "0123456789abcdef0123456789abcdef01234567"  # the key of ci/basic-values.yaml
# helm template needs a Kubernetes version for its Capabilities; installs use the cluster's.
KUBE_VERSION = "1.33.0"
# kubernetes-validate checks every rendered object against these API versions.
VALIDATE_VERSIONS = ("1.33.0", "1.37.0")

Obj = dict[str, Any]

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "CustomResourceDefinition"}


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str, name_part: str = "") -> Obj:
    found = [o for o in of_kind(objs, kind) if name_part in o["metadata"]["name"]]
    assert len(found) == 1, f"expected one {kind} named *{name_part}*, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def deployment(objs: list[Obj]) -> Obj:
    return one(objs, "Deployment")


def agent_container(objs: list[Obj]) -> Obj:
    containers = deployment(objs)["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "launch-agent")


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def pod_specs(objs: list[Obj]) -> Iterator[tuple[str, Obj]]:
    for o in objs:
        if o["kind"] == "Pod":
            yield o["metadata"]["name"], o["spec"]
        elif o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]


def pss_restricted_violations(spec: Obj) -> list[str]:
    """The rules of the 'restricted' Pod Security Standard that a pod spec breaks (the agent's own
    check, which a differential test keeps equal to the API server's PodSecurity admission)."""
    from agent.manifest import pss_violations

    return pss_violations({}, spec, "restricted")


def all_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from all_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_strings(v)
    elif isinstance(node, str):
        yield node


def roles_by_namespace(objs: list[Obj]) -> dict[str, Obj]:
    return {r["metadata"]["namespace"]: r for r in of_kind(objs, "Role")}


def grants(role: Obj, group: str, resource: str, verb: str, name: str | None = None) -> bool:
    for rule in role["rules"]:
        if group in rule.get("apiGroups", []) and resource in rule.get("resources", []) and verb in rule["verbs"]:
            names = rule.get("resourceNames")
            if not names or (name is not None and name in names):
                return True
    return False
