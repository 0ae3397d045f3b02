"""The Kubernetes-typed values are checked strictly against the pinned Kubernetes' own schema.

`agent.resources`, tolerations, affinity, the security contexts, extra volumes and mounts and the
NetworkPolicy rules are Kubernetes objects the chart passes through; the API server would drop a
field it does not know (`resources.limit`, `readOnlyRootFileSystem`) without a word. The values
schema refers to the definitions of the Kubernetes OpenAPI the localenv pins, so helm refuses them.
"""

from __future__ import annotations

import json

import pytest
from chart_checks import BASIC, CHART, REPO

from generator import chart_schema, k8s_schema

BAD = [
    ({"agent": {"resources": {"limit": {"cpu": "1"}}}}, "/agent/resources"),
    ({"agent": {"resources": {"limits": {"cpu": {"cores": 1}}}}}, "/agent/resources"),
    ({"agent": {"containerSecurityContext": {"readOnlyRootFileSystem": True}}}, "/agent/containerSecurityContext"),
    ({"agent": {"podSecurityContext": {"runAsUser": "root"}}}, "/agent/podSecurityContext/runAsUser"),
    ({"agent": {"tolerations": [{"key": "gpu", "efect": "NoSchedule"}]}}, "/agent/tolerations/0"),
    ({"agent": {"affinity": {"nodeAfinity": {}}}}, "/agent/affinity"),
    ({"agent": {"extraVolumes": [{"name": "x", "emptydir": {}}]}}, "/agent/extraVolumes/0"),
    ({"agent": {"extraVolumeMounts": [{"name": "x", "mountpath": "/x"}]}}, "/agent/extraVolumeMounts/0"),
    ({"networkPolicy": {"egress": [{"port": [{"port": 443}]}]}}, "/networkPolicy/egress/0"),
    ({"networkPolicy": {"ingressFrom": [{"podselector": {}}]}}, "/networkPolicy/ingressFrom/0"),
]


@pytest.mark.parametrize(("values", "where"), BAD, ids=[w for _, w in BAD])
def test_unknown_kubernetes_fields_are_refused(render_error, values, where: str) -> None:
    err = render_error(values, files=(BASIC,))
    assert "values don't meet the specifications of the schema" in err and where in err, err


def test_good_kubernetes_values_pass(render) -> None:
    values = {"agent": {
        "resources": {"requests": {"cpu": 0.5, "memory": "300Mi"}, "limits": {"memory": "1Gi"}},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["cpu"]}]}]}}},
        "extraVolumes": [{"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}}],
        "extraVolumeMounts": [{"name": "cache", "mountPath": "/cache"}]}}
    render(files=(BASIC,), values=values)


def test_definitions_are_those_of_the_pinned_kubernetes() -> None:
    defs = json.loads((REPO / "schemas" / "kubernetes.defs.json").read_text())
    assert defs["kubernetesVersion"] == k8s_schema.pinned_version()
    chart = json.loads((CHART / "values.schema.json").read_text())
    for name in ("io.k8s.api.core.v1.ResourceRequirements", "io.k8s.api.core.v1.SecurityContext",
                 "io.k8s.api.core.v1.Volume", "io.k8s.api.networking.v1.NetworkPolicyPeer"):
        assert chart["$defs"][name]["additionalProperties"] is False
    # the generated files are what the generator writes now (regenerate: python -m generator schema)
    for path, text in chart_schema.expected_files().items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale; run python -m generator schema"
