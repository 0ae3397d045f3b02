"""agent.manifest over the seed examples: a Job queue config and a Kubeflow PyTorchJob queue config."""

from __future__ import annotations

import copy

import pytest

from agent.manifest import (
    ANN_ITEM_ID,
    LABEL_AGENT,
    LABEL_ITEM,
    LABEL_RUN_ID,
    ManifestError,
    ManifestSettings,
    build_workload,
    dns_name,
    label_value,
    pod_templates,
)

SETTINGS = ManifestSettings(agent_namespace="wandb", target_namespaces=("wandb", "ml-jobs"),
                            api_key_secret="wandb-api-key-ci", base_url="http://wandb.local",
                            agent_identity="ci", queue_entity="acme")

JOB_QUEUE = {
    "metadata": {"namespace": "ml-jobs", "labels": {"team": "ml"}},
    "spec": {"template": {"spec": {"containers": [{
        "env": [{"name": "MY_VAR", "value": "1"}],
        "resources": {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "1"}},
    }]}}},
}

PYTORCH_QUEUE = {
    "apiVersion": "kubeflow.org/v1",
    "kind": "PyTorchJob",
    "metadata": {"name": "pytorch-${run_id}"},
    "spec": {"pytorchReplicaSpecs": {
        "Master": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "pytorch", "image": "${image_uri}", "args": ["--backend", "gloo"]}]}}},
        "Worker": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "pytorch", "image": "${image_uri}"}]}}},
    }},
}


def spec_with(config: dict, **extra) -> dict:
    spec = {"entity": "acme", "project": "Demo", "run_id": "ab12cd34", "name": "my run",
            "docker": {"docker_image": "busybox:1.36"}, "resource": "kubernetes",
            "resource_args": {"kubernetes": copy.deepcopy(config)},
            "overrides": {"args": [], "entry_point": [], "run_config": {"lr": 0.1}}}
    spec.update(extra)
    return spec


def env_of(container: dict) -> dict:
    return {e["name"]: e for e in container["env"]}


def test_job_example():
    objs = build_workload(spec_with(JOB_QUEUE), item_id="UnVuUXVldWVJdGVtOjE=", queue="q", settings=SETTINGS)
    assert len(objs) == 1
    job = objs[0]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["namespace"] == "ml-jobs"
    assert len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["labels"]["team"] == "ml"
    assert job["metadata"]["labels"][LABEL_RUN_ID] == "ab12cd34"
    assert job["metadata"]["labels"][LABEL_AGENT] == "ci"
    assert job["metadata"]["annotations"][ANN_ITEM_ID] == "UnVuUXVldWVJdGVtOjE="
    assert "=" not in job["metadata"]["labels"][LABEL_ITEM]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"][LABEL_RUN_ID] == "ab12cd34"
    assert pod["spec"]["restartPolicy"] == "Never"
    (c,) = pod["spec"]["containers"]
    assert c["image"] == "busybox:1.36"
    assert c["resources"]["limits"]["memory"] == "4Gi"
    env = env_of(c)
    assert env["MY_VAR"]["value"] == "1"
    assert env["WANDB_API_KEY"] == {"name": "WANDB_API_KEY", "valueFrom": {
        "secretKeyRef": {"name": "wandb-api-key-ci", "key": "password"}}}
    assert env["WANDB_PROJECT"]["value"] == "demo"
    assert env["WANDB_CONFIG"]["value"] == '{"lr": 0.1}'
    assert env["WANDB_LAUNCH_TRACE_ID"]["value"] == "UnVuUXVldWVJdGVtOjE="
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "seccompProfile": {"type": "RuntimeDefault"}}
    assert "args" not in c and "command" not in c


def test_wandb_config_is_set_without_a_run_config_too():
    spec = spec_with(JOB_QUEUE)
    spec["overrides"] = {}
    (job,) = build_workload(spec, item_id="I1", queue="q", settings=SETTINGS)
    assert env_of(job["spec"]["template"]["spec"]["containers"][0])["WANDB_CONFIG"]["value"] == "{}"


def test_job_name_is_deterministic_per_item():
    a = build_workload(spec_with(JOB_QUEUE), item_id="I1", queue="q", settings=SETTINGS)[0]
    b = build_workload(spec_with(JOB_QUEUE), item_id="I1", queue="q", settings=SETTINGS)[0]
    c = build_workload(spec_with(JOB_QUEUE), item_id="I2", queue="q", settings=SETTINGS)[0]
    assert a == b
    assert a["metadata"]["name"] != c["metadata"]["name"]


def test_pytorchjob_example():
    spec = spec_with(PYTORCH_QUEUE, overrides={"args": ["--epochs", "3"]})
    (obj,) = build_workload(spec, item_id="I1", queue="gpu", settings=SETTINGS)
    assert obj["kind"] == "PyTorchJob" and obj["apiVersion"] == "kubeflow.org/v1"
    assert obj["metadata"]["name"] == "pytorch-ab12cd34"
    assert obj["metadata"]["namespace"] == "wandb"
    assert "backoffLimit" not in obj["spec"]
    replicas = obj["spec"]["pytorchReplicaSpecs"]
    for role in ("Master", "Worker"):
        tmpl = replicas[role]["template"]
        assert tmpl["metadata"]["labels"][LABEL_RUN_ID] == "ab12cd34"
        (c,) = tmpl["spec"]["containers"]
        assert c["image"] == "busybox:1.36"
        assert c["args"] == ["--epochs", "3"]
        env = env_of(c)
        assert "value" not in env["WANDB_API_KEY"]
        assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "wandb-api-key-ci"
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_agent_environment_is_never_a_macro(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "local-" + "s" * 40)
    config = copy.deepcopy(JOB_QUEUE)
    config["metadata"]["labels"]["leak"] = "${WANDB_API_KEY}"
    config["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "K", "value": "${WANDB_API_KEY}"})
    (job,) = build_workload(spec_with(config), item_id="I1", queue="q", settings=SETTINGS)
    assert "s" * 40 not in repr(job)


def test_long_names_are_cut_with_hash():
    long = "x" * 80
    a, b = dns_name(long + "a"), dns_name(long + "b")
    assert len(a) <= 63 and len(b) <= 63 and a != b
    assert dns_name("Team42_my_project2024") == "team42-my-project2024"
    assert label_value("UnVuUXVldWVJdGVtOjE=") != "UnVuUXVldWVJdGVtOjE="
    assert len(label_value("a" * 100)) <= 63


def test_user_security_context_is_kept():
    config = copy.deepcopy(JOB_QUEUE)
    c = config["spec"]["template"]["spec"]["containers"][0]
    c["securityContext"] = {"runAsUser": 1000, "capabilities": {"drop": ["NET_RAW"]}}
    config["spec"]["backoffLimit"] = 3
    (job,) = build_workload(spec_with(config), item_id="I1", queue="q", settings=SETTINGS)
    sc = job["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert sc["runAsUser"] == 1000
    assert sc["capabilities"] == {"drop": ["NET_RAW"]}
    assert sc["allowPrivilegeEscalation"] is False
    assert job["spec"]["backoffLimit"] == 3


def test_overrides_only_touch_main_container():
    config = copy.deepcopy(JOB_QUEUE)
    config["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
    spec = spec_with(config, overrides={"args": ["a"], "entry_point": ["python", "x.py"]})
    (job,) = build_workload(spec, item_id="I1", queue="q", settings=SETTINGS)
    main, side = job["spec"]["template"]["spec"]["containers"]
    assert main["command"] == ["python", "x.py"] and main["args"] == ["a"]
    assert "command" not in side and "args" not in side


def test_foreign_namespace_refused():
    config = copy.deepcopy(JOB_QUEUE)
    config["metadata"]["namespace"] = "ml-prod"
    with pytest.raises(ManifestError) as err:
        build_workload(spec_with(config), item_id="I1", queue="q", settings=SETTINGS)
    assert err.value.rule == "namespace"
    assert "namespace ml-prod is not a target of this agent" in str(err.value)


def test_pod_templates_found_everywhere():
    assert len(list(pod_templates(PYTORCH_QUEUE))) == 2
