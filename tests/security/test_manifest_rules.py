"""The manifest's security rules on the agent path: each case here was accepted (or crashed) before."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.config import resolve
from agent.manifest import AUXILIARY_KINDS, ManifestError, ManifestSettings, build_workload, secret_refs

IMG = "registry.local/run:1"


def settings(level: str = "baseline", **kw: Any) -> ManifestSettings:
    return ManifestSettings(agent_namespace="wandb", api_key_secret="wandb-api-key-rel", security_level=level, **kw)


def spec(pod: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    pod_spec = {"containers": [{"name": "main"}], **(pod or {})}
    return {"entity": "e", "project": "p", "run_id": "r1", "docker": {"docker_image": IMG},
            "resource_args": {"kubernetes": {"spec": {"template": {"spec": copy.deepcopy(pod_spec)}}}}, **extra}


def refused(run_spec: dict[str, Any], s: ManifestSettings) -> ManifestError:
    with pytest.raises(ManifestError) as err:
        build_workload(run_spec, item_id="i", queue="q", settings=s)
    return err.value


def caps(**c: Any) -> dict[str, Any]:
    return {"containers": [{"name": "main", "securityContext": {"capabilities": c}}]}


@pytest.mark.parametrize("drop", [["NET_RAW"], [], ["all"]])
def test_restricted_refuses_a_drop_list_without_all(drop):
    err = refused(spec(caps(drop=drop)), settings("restricted"))
    assert err.rule == "pod-security-restricted" and "drop ALL" in err.message


def test_restricted_accepts_drop_all_and_baseline_any_drop():
    build_workload(spec(caps(drop=["NET_RAW", "ALL"])), item_id="i", queue="q", settings=settings("restricted"))
    build_workload(spec(caps(drop=[])), item_id="i", queue="q", settings=settings("baseline"))


def test_restricted_defaults_the_pod_when_one_container_sets_run_as_non_root():
    pod = {"containers": [{"name": "a", "securityContext": {"runAsNonRoot": True}}, {"name": "b", "image": IMG}]}
    wl = build_workload(spec(pod), item_id="i", queue="q", settings=settings("restricted"))[-1]
    assert wl["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_capability_names_are_compared_exactly():
    assert refused(spec(caps(add=["CAP_CHOWN"])), settings()).rule == "pod-security-baseline"
    assert refused(spec(caps(add=["chown"])), settings()).rule == "pod-security-baseline"


def test_only_the_pod_templates_annotations_count():
    run = spec()
    run["resource_args"]["kubernetes"]["metadata"] = {"annotations": {"note": "seccomp unconfined elsewhere"}}
    build_workload(run, item_id="i", queue="q", settings=settings())


def test_windows_pods_get_no_linux_only_defaults():
    pod = {"os": {"name": "windows"}, "containers": [{"name": "main"}]}
    wl = build_workload(spec(pod), item_id="i", queue="q", settings=settings("restricted"))[-1]
    tspec = wl["spec"]["template"]["spec"]
    assert "securityContext" not in tspec["containers"][0] and tspec["securityContext"] == {"runAsNonRoot": True}


def test_ephemeral_containers_are_refused_in_templates():
    pod = {"ephemeralContainers": [{"name": "dbg", "image": IMG}]}
    assert refused(spec(pod), settings("privileged")).rule == "containers"


# additional_services ---------------------------------------------------------------------------

def aux(config: Any) -> dict[str, Any]:
    return spec(additional_services=[{"config": config}])


DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {
    "selector": {"matchLabels": {"app": "x"}},
    "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"image": IMG}]}}}}


@pytest.mark.parametrize("where", ["object", "template"])
def test_additional_service_without_metadata_is_built(where):
    d = copy.deepcopy(DEPLOYMENT)
    if where == "object":
        d.pop("metadata", None)
    else:
        d["spec"]["template"].pop("metadata")
    objs = build_workload(aux(d), item_id="i", queue="q", settings=settings())
    assert objs[0]["metadata"]["name"] == "p-r1-aux0"
    assert objs[0]["spec"]["template"]["metadata"]["labels"]["wandb.ai/run-id"] == "r1"


@pytest.mark.parametrize("meta", [None, {"name": None, "labels": None}])
def test_additional_service_with_null_metadata_is_built(meta):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"ports": [{"port": 80}]}}
    objs = build_workload(aux(svc), item_id="i", queue="q", settings=settings())
    assert objs[0]["metadata"]["name"] == "p-r1-aux0"


@pytest.mark.parametrize(("api_version", "kind"), [("v1", "Secret"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
                                                   ("v1", "ServiceAccount"), ("apps/v1", "DaemonSet"),
                                                   ("batch/v1", "Job"), ("v1", "Namespace"), ("v1", None)])
def test_additional_service_kinds_are_limited(api_version, kind):
    err = refused(aux({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}), settings())
    assert err.rule == "additional-services" and "Deployment" in err.message


def test_additional_service_kinds_are_the_three_of_the_official_runner():
    assert {k for _, k in AUXILIARY_KINDS} == {"Deployment", "Service", "Pod"}


def test_service_name_starting_with_a_digit_is_refused():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1svc-${run_id}"}, "spec": {}}
    assert refused(aux(svc), settings()).rule == "name"


def test_derived_service_name_starts_with_a_letter():
    run = aux({"apiVersion": "v1", "kind": "Service", "spec": {}})
    run["project"] = "2024-models"
    svc = build_workload(run, item_id="i", queue="q", settings=settings())[0]
    assert svc["metadata"]["name"][0].isalpha(), svc["metadata"]["name"]


def test_pod_templates_of_additional_services_follow_the_same_rules():
    d = copy.deepcopy(DEPLOYMENT)
    d["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"capabilities": {"drop": ["NET_RAW"]}}
    assert refused(aux(d), settings("restricted")).rule == "pod-security-restricted"
    d = copy.deepcopy(DEPLOYMENT)
    d["spec"]["template"]["spec"]["volumes"] = [{"name": "s", "secret": {"secretName": "git-creds"}}]
    assert refused(aux(d), settings()).rule == "secret"
    pod = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "c"}]}}
    assert refused(aux(pod), settings()).rule == "image"


def test_invalid_label_keys_are_refused():
    run = spec()
    run["resource_args"]["kubernetes"]["metadata"] = {"labels": {"bad key!": "x"}}
    assert refused(run, settings()).rule == "metadata"
    run["resource_args"]["kubernetes"]["metadata"] = {"labels": {"example.com/ok-key": "x"}}
    build_workload(run, item_id="i", queue="q", settings=settings())


# Secrets ---------------------------------------------------------------------------------------

SECRET_USES = {
    "env secretKeyRef": {"containers": [{"name": "main", "env": [
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "{s}", "key": "k"}}}]}]},
    "envFrom": {"containers": [{"name": "main", "envFrom": [{"secretRef": {"name": "{s}"}}]}]},
    "init container env": {"initContainers": [{"name": "i", "image": IMG, "env": [
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "{s}", "key": "k"}}}]}]},
    "secret volume": {"volumes": [{"name": "v", "secret": {"secretName": "{s}"}}]},
    "projected secret": {"volumes": [{"name": "v", "projected": {"sources": [{"secret": {"name": "{s}"}}]}}]},
    "csi nodePublishSecretRef": {"volumes": [{"name": "v", "csi": {"driver": "d",
                                                                   "nodePublishSecretRef": {"name": "{s}"}}}]},
    "azureFile": {"volumes": [{"name": "v", "azureFile": {"secretName": "{s}", "shareName": "x"}}]},
    "cephfs secretRef": {"volumes": [{"name": "v", "cephfs": {"monitors": ["m"], "secretRef": {"name": "{s}"}}}]},
    "imagePullSecrets": {"imagePullSecrets": [{"name": "{s}"}]},
}


def _with(pod: dict[str, Any], name: str) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(pod).replace("{s}", name))


@pytest.mark.parametrize("use", list(SECRET_USES))
def test_secret_references_must_be_allowlisted(use):
    for level in ("privileged", "baseline"):
        err = refused(spec(_with(SECRET_USES[use], "git-creds")), settings(level))
        assert err.rule == "secret" and "git-creds" in err.message
    build_workload(spec(_with(SECRET_USES[use], "team-token")), item_id="i", queue="q",
                   settings=settings(allowed_secrets=("team-token",)))
    build_workload(spec(_with(SECRET_USES[use], "wandb-api-key-rel")), item_id="i", queue="q", settings=settings())


def test_every_secret_use_is_found():
    assert all(list(secret_refs(_with(pod, "x"))) for pod in SECRET_USES.values())


def test_secret_references_in_custom_resources_are_checked():
    run = spec()
    run["resource_args"]["kubernetes"] = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {
        "pytorchReplicaSpecs": {"Worker": {"template": {"spec": {"containers": [{"image": IMG, "envFrom": [
            {"secretRef": {"name": "ssh-keys"}}]}]}}}}}}
    assert refused(run, settings()).rule == "secret"


def test_allowed_secrets_come_from_the_environment(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("queues: [q]\n")
    s = resolve(config_path=str(cfg), env={"WANDB_API_KEY": "k" * 40, "LAUNCH_AGENT_ALLOWED_SECRETS": "a, b"})
    assert s.manifest_settings().allowed_secrets == ("a", "b")
