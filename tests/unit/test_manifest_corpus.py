"""A corpus of queue configs, valid and invalid, through agent.manifest.build_workload."""

from __future__ import annotations

import copy

import pytest

from agent.manifest import (
    LABEL_AGENT,
    LABEL_RUN_ID,
    ManifestError,
    ManifestSettings,
    build_workload,
    pod_templates,
)


def job(pod_spec: dict | None = None, **spec) -> dict:
    pod = {"containers": [{"name": "main"}]}
    pod.update(pod_spec or {})
    return {"spec": {"template": {"spec": pod}, **spec}}


def container(**fields) -> dict:
    return job({"containers": [{"name": "main", **fields}]})


VOLCANO = {
    "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
    "metadata": {"name": "vc-${run_id}"},
    "spec": {"minAvailable": 1, "schedulerName": "volcano", "tasks": [
        {"name": "worker", "replicas": 2, "template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "w", "image": "${image_uri}"}]}}}]},
}
JOBSET = {
    "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
    "spec": {"replicatedJobs": [{"name": "workers", "replicas": 1, "template": {"spec": {
        "template": {"spec": {"containers": [{"name": "w", "image": "${image_uri}"}]}}}}}]},
}
MPIJOB = {
    "apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob",
    "spec": {"mpiReplicaSpecs": {
        "Launcher": {"replicas": 1, "template": {"spec": {"containers": [{"image": "${image_uri}"}]}}},
        "Worker": {"replicas": 2, "template": {"spec": {"containers": [{"image": "${image_uri}"}]}}}}},
}
RAYJOB = {
    "apiVersion": "ray.io/v1", "kind": "RayJob",
    "spec": {"entrypoint": "python train.py", "rayClusterSpec": {"headGroupSpec": {"template": {"spec": {
        "containers": [{"name": "head", "image": "${image_uri}"}]}}}}},
}

# name, queue config, security level, expected rule (None = valid)
CORPUS: list[tuple[str, dict, str, str | None]] = [
    ("empty config", {}, "baseline", None),
    ("bare job", job(), "baseline", None),
    ("job with resources", container(resources={"limits": {"nvidia.com/gpu": 1}}), "baseline", None),
    ("job with node selector and tolerations", job({"nodeSelector": {"gpu": "a100"},
                                                    "tolerations": [{"key": "gpu", "operator": "Exists"}]}),
     "baseline", None),
    ("job with runAsUser and fsGroup", job({"securityContext": {"runAsUser": 1000, "fsGroup": 1000}}),
     "restricted", None),
    ("job in the agent namespace explicitly", {"metadata": {"namespace": "wandb"}, **job()}, "baseline", None),
    ("legacy top-level namespace", {"namespace": "ml-jobs", **job()}, "baseline", None),
    ("job with completions", job(completions=3, parallelism=3), "baseline", None),
    ("job with emptyDir and pvc", job({"volumes": [{"name": "a", "emptyDir": {}},
                                                  {"name": "b", "persistentVolumeClaim": {"claimName": "d"}}]}),
     "restricted", None),
    ("baseline allows NET_BIND_SERVICE and CHOWN", container(securityContext={
        "capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]}}), "baseline", None),
    ("volcano job", VOLCANO, "baseline", None),
    ("jobset", JOBSET, "baseline", None),
    ("mpijob", MPIJOB, "baseline", None),
    ("rayjob", RAYJOB, "baseline", None),
    ("privileged level accepts hostNetwork", job({"hostNetwork": True}), "privileged", None),
    ("privileged level accepts privileged container", container(securityContext={"privileged": True}),
     "privileged", None),
    ("safe sysctl", job({"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}}),
     "baseline", None),
    ("default service account named", job({"serviceAccountName": "default"}), "baseline", None),
    # refused
    ("foreign namespace", {"metadata": {"namespace": "kube-system"}, **job()}, "baseline", "namespace"),
    ("foreign legacy namespace", {"namespace": "other", **job()}, "baseline", "namespace"),
    ("privileged container", container(securityContext={"privileged": True}), "baseline",
     "pod-security-baseline"),
    ("host network", job({"hostNetwork": True}), "baseline", "pod-security-baseline"),
    ("host pid as string", job({"hostPID": "true"}), "baseline", "shape"),
    ("hostPath volume", job({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}), "baseline",
     "pod-security-baseline"),
    ("SYS_ADMIN capability", container(securityContext={"capabilities": {"add": ["SYS_ADMIN"]}}), "baseline",
     "pod-security-baseline"),
    ("restricted refuses CHOWN", container(securityContext={"capabilities": {"add": ["CHOWN"]}}),
     "restricted", "pod-security-restricted"),
    ("another service account", job({"serviceAccountName": "cluster-admin-sa"}), "baseline",
     "pod-security-baseline"),
    ("host port", container(ports=[{"containerPort": 80, "hostPort": 80}]), "baseline",
     "pod-security-baseline"),
    ("unconfined seccomp", job({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}), "baseline",
     "pod-security-baseline"),
    ("unsafe sysctl", job({"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}}),
     "baseline", "pod-security-baseline"),
    ("restricted root user", job({"securityContext": {"runAsUser": 0}}), "restricted",
     "pod-security-restricted"),
    ("restricted nfs volume", job({"volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]}),
     "restricted", "pod-security-restricted"),
    ("restricted privilege escalation", container(securityContext={"allowPrivilegeEscalation": True}),
     "restricted", "pod-security-restricted"),
    ("privileged in a volcano task", {**VOLCANO, "spec": {"tasks": [{"name": "t", "template": {"spec": {
        "containers": [{"name": "c", "image": "x", "securityContext": {"privileged": True}}]}}}]}},
     "baseline", "pod-security-baseline"),
    ("hostPath in a pytorch worker", {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {
        "pytorchReplicaSpecs": {"Worker": {"template": {"spec": {
            "containers": [{"image": "x"}], "volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}}}}}},
     "baseline", "pod-security-baseline"),
    ("custom resource without kind", {"apiVersion": "example.com/v1", "spec": {}}, "baseline", "kind"),
    ("custom resource without pods", {"apiVersion": "example.com/v1", "kind": "Thing", "spec": {}}, "baseline",
     "containers"),
    ("batch kind other than Job", {"apiVersion": "batch/v1", "kind": "CronJob"}, "baseline", "kind"),
    ("unconfined apparmor annotation", {"spec": {"template": {
        "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}},
        "spec": {"containers": [{"name": "main"}]}}}}, "baseline", "pod-security-baseline"),
]


def settings(level: str) -> ManifestSettings:
    return ManifestSettings(agent_namespace="wandb", target_namespaces=("ml-jobs",), agent_identity="rel",
                            api_key_secret="wandb-api-key-rel", security_level=level)


def run_spec(config: dict) -> dict:
    return {"entity": "acme", "project": "proj", "run_id": "r1", "docker": {"docker_image": "img:1"},
            "resource_args": {"kubernetes": copy.deepcopy(config)}}


def test_corpus_size():
    assert len(CORPUS) >= 25
    assert sum(1 for c in CORPUS if c[3] is None) >= 10
    assert sum(1 for c in CORPUS if c[3] is not None) >= 10


@pytest.mark.parametrize(("name", "config", "level", "rule"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus(name, config, level, rule):
    if rule is not None:
        with pytest.raises(ManifestError) as err:
            build_workload(run_spec(config), item_id="item/1+=", queue="q", settings=settings(level))
        assert err.value.rule == rule, str(err.value)
        return
    objs = build_workload(run_spec(config), item_id="item/1+=", queue="q", settings=settings(level))
    obj = objs[-1]
    meta = obj["metadata"]
    assert meta["namespace"] in ("wandb", "ml-jobs")
    assert 0 < len(meta["name"]) <= 63
    assert meta["labels"][LABEL_AGENT] == "rel"
    templates = list(pod_templates(obj))
    assert templates
    for tmpl in templates:
        assert tmpl["metadata"]["labels"][LABEL_RUN_ID] == "r1"
        for c in tmpl["spec"]["containers"]:
            assert c["image"]
            names = [e["name"] for e in c["env"]]
            assert len(names) == len(set(names))
            key = next(e for e in c["env"] if e["name"] == "WANDB_API_KEY")
            assert "value" not in key
            if level != "privileged":
                assert c["securityContext"]["capabilities"].get("drop")
    if level == "restricted":
        for tmpl in templates:
            assert tmpl["spec"]["securityContext"].get("runAsNonRoot") is True


def test_secure_mode_refuses_command_everywhere():
    s = ManifestSettings(agent_namespace="wandb", secure_mode=True)
    with pytest.raises(ManifestError) as err:
        build_workload(run_spec(MPIJOB | {"spec": {"mpiReplicaSpecs": {"Launcher": {"template": {"spec": {
            "containers": [{"image": "x", "command": ["sh"]}]}}}}}}), item_id="i", queue="q", settings=s)
    assert err.value.rule == "secure-mode"
    spec = run_spec(job()) | {"overrides": {"entry_point": ["sh"]}}
    with pytest.raises(ManifestError):
        build_workload(spec, item_id="i", queue="q", settings=s)


def test_additional_services_are_labelled_and_scoped():
    spec = run_spec(job()) | {"additional_services": [{"config": {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc-${run_id}"},
        "spec": {"ports": [{"port": 80}]}}}]}
    svc, wl = build_workload(spec, item_id="i", queue="q", settings=settings("baseline"))
    assert svc["metadata"]["name"] == "svc-r1" and svc["metadata"]["namespace"] == wl["metadata"]["namespace"]
    assert svc["metadata"]["labels"][LABEL_RUN_ID] == "r1"


def test_missing_run_id_refused():
    with pytest.raises(ManifestError) as err:
        build_workload({"entity": "a", "project": "p"}, item_id="i", queue="q", settings=settings("baseline"))
    assert err.value.rule == "run-spec"
