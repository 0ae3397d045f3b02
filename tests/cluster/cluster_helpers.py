"""Helpers shared by the chart tests on the real control plane."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml

from localenv.pytest_plugin import Kube

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "launch-agent"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
INSTANCE = "app.kubernetes.io/instance"



def release_name(prefix: str = "la") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def values_file(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def install(kube: Kube, release: str, namespace: str, *values: Path, extra: tuple[str, ...] = (),
            verb: str = "install", check: bool = True) -> subprocess.CompletedProcess[str]:
    """``helm install|upgrade RELEASE CHART -n NS -f ... --wait`` with the pinned helm."""
    args = [verb, release, str(CHART), "-n", namespace, "--wait", "--timeout", "180s"]
    for v in values:
        args += ["-f", str(v)]
    return kube.helm(*args, *extra, check=check)


def agent_pods(kube: Kube, namespace: str, release: str) -> list[dict]:
    pods = kube.get("pods", namespace=namespace, selector=f"{INSTANCE}={release}")
    return [p for p in pods if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "agent"]


def is_ready(pod: dict) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conds.get("Ready") == "True"


def kwok_nodes(kube: Kube) -> set[str]:
    return {n["metadata"]["name"] for n in kube.get("nodes")
            if n["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node") == "fake"}


def release_objects(kube: Kube, release: str, namespaces: list[str]) -> list[str]:
    """Every namespaced object labelled with the release, in *namespaces*, as kind/name."""
    kinds = kube.kubectl("api-resources", "--namespaced=true", "--verbs=list", "-o", "name").stdout.split()
    kinds = [k for k in kinds if k not in ("events", "events.events.k8s.io")]
    found: list[str] = []
    for ns in namespaces:
        out = kube.kubectl("get", ",".join(kinds), "-n", ns, "-l", f"{INSTANCE}={release}",
                           "-o", "json", "--ignore-not-found").stdout
        if out.strip():
            items = json.loads(out).get("items", [])
            found += [f"{ns}/{i['kind']}/{i['metadata']['name']}" for i in items
                      if i["kind"] not in ("Pod",) or not i["metadata"].get("deletionTimestamp")]
    return found
