"""Minimal CustomResourceDefinitions of the workload kinds queues launch, for tests and the demo.

Only what the API server needs to serve the kind (group, names, scope, a status subresource);
the schema keeps unknown fields, as the real operators' CRDs accept far more than we check.
"""

from __future__ import annotations

from typing import Any


def crd(group: str, version: str, kind: str, plural: str, *, short_names: tuple[str, ...] = ()) -> dict[str, Any]:
    """A namespaced CRD serving *kind* at *group*/*version* with a status subresource."""
    names: dict[str, Any] = {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"}
    if short_names:
        names["shortNames"] = list(short_names)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": names,
            "versions": [{
                "name": version, "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }],
        },
    }


PYTORCHJOB = crd("kubeflow.org", "v1", "PyTorchJob", "pytorchjobs")
VOLCANO_JOB = crd("batch.volcano.sh", "v1alpha1", "Job", "jobs", short_names=("vcjob",))
ALL = (PYTORCHJOB, VOLCANO_JOB)
