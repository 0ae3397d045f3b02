"""Every ci/ value set and the official-style values render, and every object is valid Kubernetes."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
from chart_checks import CI_FILES, CLUSTER_SCOPED, OFFICIAL_STYLE, VALIDATE_VERSIONS

VALUE_SETS = [*CI_FILES, OFFICIAL_STYLE]
IDS = [p.stem for p in VALUE_SETS]
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def test_ci_has_the_required_value_sets() -> None:
    names = {p.name.removesuffix("-values.yaml") for p in CI_FILES}
    required = {
        "basic", "gke-workload-identity", "eks-irsa", "azure-workload-identity-kaniko", "external-secret",
        "multi-namespace", "custom-resources", "ssh-and-git", "custom-ca",
    }
    assert required <= names, required - names


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=IDS)
@pytest.mark.parametrize("kube_version", VALIDATE_VERSIONS)
def test_every_object_validates_strictly(render, values_file: Path, kube_version: str) -> None:
    objs = render(files=(values_file,), namespace="ml", kube_version=kube_version)
    assert objs, "nothing rendered"
    errors = []
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=IDS)
def test_standard_labels_names_and_namespaces(render, values_file: Path) -> None:
    objs = render(files=(values_file,), namespace="ml")
    for obj in objs:
        meta = obj["metadata"]
        where = f"{obj['kind']}/{meta['name']}"
        labels = meta.get("labels") or {}
        for key in STANDARD_LABELS:
            assert labels.get(key), f"{where} lacks label {key}"
        for value in labels.values():
            assert isinstance(value, str) and len(value) <= 63, f"{where}: label value {value!r}"
        assert len(meta["name"]) <= 63, where
        if obj["kind"] not in CLUSTER_SCOPED:
            assert meta.get("namespace"), f"{where} has no namespace"
        assert obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"), f"{where}: no cluster-wide RBAC"


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=IDS)
def test_pod_template_labels_include_the_selector(render, values_file: Path) -> None:
    objs = render(files=(values_file,), namespace="ml")
    dep = next(o for o in objs if o["kind"] == "Deployment")
    selector = dep["spec"]["selector"]["matchLabels"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=IDS)
def test_no_rendered_value_is_null(render, values_file: Path) -> None:
    """The official chart renders `iam.gke.io/gcp-service-account: null` from an empty key."""
    objs = render(files=(values_file,), namespace="ml")

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                assert v is not None, f"{path}.{k} is null"
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    for obj in objs:
        walk(obj, f"{obj['kind']}/{obj['metadata']['name']}")



@pytest.mark.parametrize("values_file", VALUE_SETS, ids=IDS)
def test_every_secret_and_config_map_the_pods_read_is_rendered(render, values_file: Path) -> None:
    """Each ci/ set installs on an empty cluster: nothing the pods reference is missing."""
    objs = render(files=(values_file,), namespace="ml")
    rendered = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs if "namespace" in o["metadata"]}
    for obj in objs:
        if obj["kind"] not in ("Deployment", "Pod"):
            continue
        ns = obj["metadata"]["namespace"]
        spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]
        needed = {("Secret", s["name"]) for s in spec.get("imagePullSecrets", [])}
        for v in spec.get("volumes", []):
            if "secret" in v:
                needed.add(("Secret", v["secret"]["secretName"]))
            if "configMap" in v:
                needed.add(("ConfigMap", v["configMap"]["name"]))
            if "persistentVolumeClaim" in v:
                needed.add(("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]))
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    needed.add(("Secret", ref["secretKeyRef"]["name"]))
                if "configMapKeyRef" in ref:
                    needed.add(("ConfigMap", ref["configMapKeyRef"]["name"]))
        missing = {(kind, name) for kind, name in needed if (kind, ns, name) not in rendered}
        assert not missing, f"{obj['kind']} {obj['metadata']['name']} reads {sorted(missing)}, which are not rendered"
