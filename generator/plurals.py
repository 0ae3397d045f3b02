"""Resource plurals of well-known launchable kinds, for RBAC rules (`<group>/<plural>`)."""

from __future__ import annotations

from collections.abc import Mapping

# (API group, kind) -> resource plural, as served by the upstream CRDs.
WELL_KNOWN: dict[tuple[str, str], str] = {
    ("batch", "Job"): "jobs",
    ("kubeflow.org", "PyTorchJob"): "pytorchjobs",
    ("kubeflow.org", "TFJob"): "tfjobs",
    ("kubeflow.org", "MPIJob"): "mpijobs",
    ("kubeflow.org", "XGBoostJob"): "xgboostjobs",
    ("kubeflow.org", "PaddleJob"): "paddlejobs",
    ("kubeflow.org", "JAXJob"): "jaxjobs",
    ("kubeflow.org", "MXJob"): "mxjobs",
    ("kubeflow.org", "Notebook"): "notebooks",
    ("trainer.kubeflow.org", "TrainJob"): "trainjobs",
    ("batch.volcano.sh", "Job"): "jobs",
    ("jobset.x-k8s.io", "JobSet"): "jobsets",
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): "leaderworkersets",
    ("ray.io", "RayJob"): "rayjobs",
    ("ray.io", "RayCluster"): "rayclusters",
    ("ray.io", "RayService"): "rayservices",
    ("argoproj.io", "Workflow"): "workflows",
    ("sparkoperator.k8s.io", "SparkApplication"): "sparkapplications",
    ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets",
    ("", "Pod"): "pods",
    ("", "Service"): "services",
}


def parse_overrides(items: list[str]) -> tuple[dict[str, str], list[str]]:
    """`--plural KIND=PLURAL` (or `KIND.GROUP=PLURAL`) flags -> mapping, and one error per bad flag."""
    out: dict[str, str] = {}
    errors: list[str] = []
    for item in items:
        kind, sep, plural = item.partition("=")
        kind, plural = kind.strip(), plural.strip()
        if not sep or not kind or not plural or not plural.isascii() or not plural.replace("-", "").isalnum() \
                or plural != plural.lower():
            errors.append(f"--plural {item!r}: expected KIND=PLURAL with a lower-case plural, e.g. "
                          "--plural Workload=workloads")
            continue
        out[kind] = plural
    return out, errors


def plural_for(group: str, kind: str, overrides: Mapping[str, str]) -> str | None:
    """The plural for `kind` in `group`: a `--plural` flag first, then the built-in table."""
    for key in (f"{kind}.{group}", kind):
        if key in overrides:
            return overrides[key]
    return WELL_KNOWN.get((group, kind))
