"""The kwok configuration: stages parse, the annotations are wired, nodes are schedulable."""

from __future__ import annotations

import yaml

from localenv import kwok


def test_config_is_stage_documents() -> None:
    docs = list(yaml.safe_load_all(kwok.config_yaml()))
    assert docs and all(d["kind"] == "Stage" and d["apiVersion"] == "kwok.x-k8s.io/v1alpha1" for d in docs)
    refs = {(d["spec"]["resourceRef"]["apiGroup"], d["spec"]["resourceRef"]["kind"]) for d in docs}
    assert refs == {("v1", "Node"), ("v1", "Pod"), ("kubeflow.org/v1", "PyTorchJob"),
                    ("batch.volcano.sh/v1alpha1", "Job")}
    assert kwok.simulated_group_versions() == ["batch.volcano.sh/v1alpha1", "kubeflow.org/v1"]
    names = [d["metadata"]["name"] for d in docs]
    assert len(names) == len(set(names))


def _stage(name: str) -> dict:
    return next(d for d in kwok.stages() if d["metadata"]["name"] == name)


def test_outcome_annotation_splits_success_and_failure() -> None:
    succeed = _stage("localenv-pod-succeed")["spec"]
    fail = _stage("localenv-pod-fail")["spec"]
    assert {"key": f'.metadata.annotations["{kwok.OUTCOME}"]', "operator": "In", "values": ["fail"]} in \
        fail["selector"]["matchExpressions"]
    excluded = [e for e in succeed["selector"]["matchExpressions"] if e["key"] == f'.metadata.annotations["{kwok.OUTCOME}"]']
    assert excluded and excluded[0]["operator"] == "NotIn" and "keep-running" in excluded[0]["values"]
    assert "phase: Failed" in fail["next"]["statusTemplate"]
    assert "phase: Succeeded" in succeed["next"]["statusTemplate"]
    for spec in (succeed, fail):
        assert kwok.RUN_SECONDS in spec["delay"]["durationFrom"]["expressionFrom"]


def test_deleted_pods_are_removed() -> None:
    assert _stage("localenv-pod-delete")["spec"]["next"] == {"delete": True}


def test_nodes_have_no_taints_and_are_managed_by_kwok() -> None:
    node = kwok.node("n1")
    assert not node["spec"].get("taints")
    assert node["metadata"]["annotations"][kwok.NODE_ANNOTATION] == kwok.NODE_ANNOTATION_VALUE
    assert node["status"]["allocatable"]["pods"] == "110"
