"""The launch-agent chart installed with the real helm on the real control plane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cluster_helpers import (
    CHART,
    CI_VALUES,
    INSTANCE,
    agent_pods,
    install,
    is_ready,
    kwok_nodes,
    release_name,
    release_objects,
    values_file,
)
from pytest_helm_charts.k8s.deployment import wait_for_deployments_to_run

from localenv import crds
from localenv.pytest_plugin import Kube

API_KEY = "0123456789abcdef0123456789abcdef01234567"
OTHER_KEY = "fedcba9876543210fedcba9876543210fedcba98"
BASIC = {"agent": {"apiKey": API_KEY}, "launchConfig": "queues:\n  - default\nmax_jobs: 2\n"}


def _ready_agents(kube: Kube, ns: str, rel: str, count: int = 1) -> list[dict]:
    def done() -> bool:
        pods = [p for p in agent_pods(kube, ns, rel) if not p["metadata"].get("deletionTimestamp")]
        return len(pods) == count and all(is_ready(p) for p in pods)

    kube.wait_for(f"{count} Ready agent pod(s) of {rel} in {ns}", done)
    return [p for p in agent_pods(kube, ns, rel) if not p["metadata"].get("deletionTimestamp")]


def _replicasets(kube: Kube, ns: str, rel: str) -> dict[str, int]:
    return {rs["metadata"]["name"]: rs["spec"].get("replicas", 0)
            for rs in kube.get("replicasets", namespace=ns, selector=f"{INSTANCE}={rel}")}


def _namespaces_of(values: dict, fallback: str) -> tuple[str, list[str]]:
    agent_ns = values.get("namespace") or fallback
    extra = [n for n in values.get("additionalTargetNamespaces") or [] if n != agent_ns]
    return agent_ns, extra


def _ensure_namespace(kube: Kube, name: str) -> None:
    if not kube.kubectl("get", "namespace", name, "--ignore-not-found", "-o", "name").stdout.strip():
        kube.create_namespace(name)


# --- install of every ci values set ------------------------------------------------------------

@pytest.mark.parametrize("ci_values", CI_VALUES, ids=[p.stem for p in CI_VALUES])
def test_ci_values_install_and_become_ready(kube: Kube, kube_cluster, namespace, release, ci_values: Path) -> None:
    values = yaml.safe_load(ci_values.read_text()) or {}
    ns = namespace("ci")
    agent_ns, extra = _namespaces_of(values, ns)
    for name in [agent_ns, *extra]:
        _ensure_namespace(kube, name)
    rel = release_name("ci")
    release.append((rel, ns))
    install(kube, rel, ns, ci_values)
    # pytest-helm-charts' wait, as the same test runs against kind (pytest --kubeconfig ...)
    [deploy] = wait_for_deployments_to_run(kube_cluster.kube_client, [f"{rel}-launch-agent"], agent_ns,
                                           timeout_sec=180)
    assert deploy.replicas == int(values.get("replicas", 1))
    pods = _ready_agents(kube, agent_ns, rel, int(values.get("replicas", 1)))
    assert all(p["spec"].get("nodeName") for p in pods)
    if kube.state is not None:  # our localenv: scheduled on a kwok node
        assert {p["spec"]["nodeName"] for p in pods} <= kwok_nodes(kube)


def referenced(pod: dict) -> dict[str, set[str]]:
    """Names of the Secrets and ConfigMaps a pod needs (optional references left out)."""
    refs: dict[str, set[str]] = {"secrets": set(), "configmaps": set()}
    spec = pod["spec"]
    refs["secrets"] |= {s["name"] for s in spec.get("imagePullSecrets", [])}
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        for env in container.get("env", []):
            value_from = env.get("valueFrom", {})
            for key, kind in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
                ref = value_from.get(key)
                if ref and not ref.get("optional"):
                    refs[kind].add(ref["name"])
        for src in container.get("envFrom", []):
            for key, kind in (("secretRef", "secrets"), ("configMapRef", "configmaps")):
                if key in src and not src[key].get("optional"):
                    refs[kind].add(src[key]["name"])
    for volume in spec.get("volumes", []):
        if "secret" in volume and not volume["secret"].get("optional"):
            refs["secrets"].add(volume["secret"]["secretName"])
        if "configMap" in volume and not volume["configMap"].get("optional"):
            refs["configmaps"].add(volume["configMap"]["name"])
        for source in volume.get("projected", {}).get("sources", []):
            for kind, key in (("secrets", "secret"), ("configmaps", "configMap")):
                if key in source and not source[key].get("optional"):
                    refs[kind].add(source[key]["name"])
    return refs


def missing_references(kube: Kube, pod: dict) -> list[str]:
    """Secrets/ConfigMaps the pod needs that do not exist in its namespace (a kubelet would
    refuse to start it; kwok does not check, so the test does)."""
    ns = pod["metadata"]["namespace"]
    missing: list[str] = []
    for kind, names in referenced(pod).items():
        existing = {o["metadata"]["name"] for o in kube.get(kind, namespace=ns)}
        missing += [f"{kind}/{name}" for name in sorted(names - existing)]
    return missing


@pytest.mark.parametrize("ci_values", CI_VALUES, ids=[p.stem for p in CI_VALUES])
def test_every_secret_the_agent_pod_references_exists(kube: Kube, namespace, release, ci_values: Path) -> None:
    values = yaml.safe_load(ci_values.read_text()) or {}
    ns = namespace("sec")
    agent_ns, extra = _namespaces_of(values, ns)
    for name in [agent_ns, *extra]:
        _ensure_namespace(kube, name)
    rel = release_name("sec")
    release.append((rel, ns))
    install(kube, rel, ns, ci_values)
    for pod in _ready_agents(kube, agent_ns, rel, int(values.get("replicas", 1))):
        assert missing_references(kube, pod) == []


def test_the_reference_check_finds_a_missing_secret(kube: Kube, namespace) -> None:
    ns = namespace("ref")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "env": [
               {"name": "K", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}},
               {"name": "O", "valueFrom": {"secretKeyRef": {"name": "maybe", "key": "k", "optional": True}}}]}],
               "volumes": [{"name": "ca", "configMap": {"name": "kube-root-ca.crt"}}]}}
    kube.apply(pod)
    assert missing_references(kube, kube.get("pod", "p", namespace=ns)) == ["secrets/nope"]


# --- upgrade, rollback, uninstall -------------------------------------------------------------

def test_upgrade_with_new_config_or_api_key_rolls_the_pod(kube: Kube, namespace, release, tmp_path: Path) -> None:
    ns = namespace("up")
    rel = release_name("up")
    release.append((rel, ns))
    install(kube, rel, ns, values_file(tmp_path, BASIC))
    first = _ready_agents(kube, ns, rel)[0]["metadata"]["name"]
    rs_before = set(_replicasets(kube, ns, rel))

    changed_config = {**BASIC, "launchConfig": "queues:\n  - default\n  - second\nmax_jobs: 2\n"}
    install(kube, rel, ns, values_file(tmp_path, changed_config, "v2.yaml"), verb="upgrade")
    second = _ready_agents(kube, ns, rel)[0]["metadata"]["name"]
    rs_after_config = set(_replicasets(kube, ns, rel))
    assert second != first
    assert rs_after_config - rs_before, "a changed agent config must create a new ReplicaSet"

    changed_key = {**changed_config, "agent": {"apiKey": OTHER_KEY}}
    install(kube, rel, ns, values_file(tmp_path, changed_key, "v3.yaml"), verb="upgrade")
    third = _ready_agents(kube, ns, rel)[0]["metadata"]["name"]
    assert third != second
    assert set(_replicasets(kube, ns, rel)) - rs_after_config, "a changed API key must create a new ReplicaSet"
    active = {name for name, replicas in _replicasets(kube, ns, rel).items() if replicas}
    assert len(active) == 1


def test_rollback_and_uninstall_leave_nothing_behind(kube: Kube, namespace, release, tmp_path: Path) -> None:
    ns = namespace("rb")
    extra = namespace("rbx")
    rel = release_name("rb")
    release.append((rel, ns))
    install(kube, rel, ns, values_file(tmp_path, BASIC))
    with_extra = {**BASIC, "additionalTargetNamespaces": [extra]}
    install(kube, rel, ns, values_file(tmp_path, with_extra, "v2.yaml"), verb="upgrade")
    assert release_objects(kube, rel, [extra]), "the upgrade should have added RBAC/Secrets in the extra namespace"

    kube.helm("rollback", rel, "1", "-n", ns, "--wait", "--timeout", "180s")
    _ready_agents(kube, ns, rel)
    assert release_objects(kube, rel, [extra]) == []

    kube.helm("uninstall", rel, "-n", ns, "--wait", "--timeout", "120s")
    kube.wait_for("the release's pods to go", lambda: not agent_pods(kube, ns, rel))
    assert release_objects(kube, rel, [ns, extra]) == []
    assert kube.helm("list", "-n", ns, "-a", "-q").stdout.strip() == ""


def test_two_releases_coexist_in_one_namespace(kube: Kube, namespace, release, tmp_path: Path) -> None:
    ns = namespace("two")
    a, b = release_name("a"), release_name("b")
    release.extend([(a, ns), (b, ns)])
    path = values_file(tmp_path, BASIC)
    install(kube, a, ns, path)
    install(kube, b, ns, path)
    _ready_agents(kube, ns, a)
    _ready_agents(kube, ns, b)
    objs_a = {o.split("/", 1)[1] for o in release_objects(kube, a, [ns])}
    objs_b = {o.split("/", 1)[1] for o in release_objects(kube, b, [ns])}
    assert objs_a and objs_b and not (objs_a & objs_b)
    kube.helm("uninstall", a, "-n", ns, "--wait", "--timeout", "120s")
    _ready_agents(kube, ns, b)
    assert release_objects(kube, b, [ns]) and kube.helm("status", b, "-n", ns).returncode == 0


def test_release_name_of_53_characters_installs(kube: Kube, namespace, release, tmp_path: Path) -> None:
    ns = namespace("long")
    rel = ("launch-agent-release-" + "x" * 40)[:53]
    assert len(rel) == 53
    release.append((rel, ns))
    install(kube, rel, ns, values_file(tmp_path, {**BASIC, "replicas": 2}))
    _ready_agents(kube, ns, rel, 2)


def test_helm_test_passes(kube: Kube, namespace, release, tmp_path: Path) -> None:
    ns = namespace("ht")
    rel = release_name("ht")
    release.append((rel, ns))
    install(kube, rel, ns, values_file(tmp_path, BASIC))
    kube.helm("test", rel, "-n", ns, "--timeout", "120s")


# --- RBAC on the real authorizer ----------------------------------------------------------------

def _agent_sa(kube: Kube, ns: str, rel: str) -> str:
    return _ready_agents(kube, ns, rel)[0]["spec"]["serviceAccountName"]


def test_agent_rbac_is_limited_to_its_target_namespaces(kube: Kube, namespace, release, tmp_path: Path) -> None:
    ns, target, outside = namespace("rbac"), namespace("tgt"), namespace("out")
    rel = release_name("rbac")
    release.append((rel, ns))
    install(kube, rel, ns, values_file(tmp_path, {**BASIC, "additionalTargetNamespaces": [target]}))
    sa = kube.sa_kubeconfig(ns, _agent_sa(kube, ns, rel))
    for where in (ns, target):
        for verb in ("create", "get", "list", "watch", "delete"):
            assert kube.can_i(sa, verb, "jobs.batch", where), f"{verb} jobs in {where}"
        assert kube.can_i(sa, "watch", "pods", where)
        assert kube.can_i(sa, "get", "pods", where, subresource="log")
    for verb in ("create", "watch", "delete", "list"):
        assert not kube.can_i(sa, verb, "jobs.batch", outside), f"{verb} jobs outside the targets"
    assert not kube.can_i(sa, "list", "secrets")  # cluster-wide
    for where in (ns, target, outside):
        assert not kube.can_i(sa, "list", "secrets", where)
    assert not kube.can_i(sa, "create", "pods", outside)
    # Real requests, not only the authorizer's answer.
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "probe"},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}
    kube.kubectl("create", "-n", target, "-f", "-", input_text=json.dumps(job), kubeconfig_path=sa)
    denied = kube.kubectl("create", "-n", outside, "-f", "-", input_text=json.dumps(job), kubeconfig_path=sa,
                          check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    kube.kubectl("delete", "job", "probe", "-n", target, "--wait=false", kubeconfig_path=sa)


@pytest.fixture(scope="session")
def pytorchjob_crd(kube: Kube) -> str:
    kube.apply(crds.PYTORCHJOB)
    kube.kubectl("wait", "--for=condition=Established", "crd/pytorchjobs.kubeflow.org", "--timeout=60s")
    return "pytorchjobs.kubeflow.org"


def test_pytorchjob_queue_rbac_works_with_the_crd(kube: Kube, namespace, release, tmp_path: Path,
                                                   pytorchjob_crd: str) -> None:
    ns, outside = namespace("pt"), namespace("ptout")
    rel = release_name("pt")
    release.append((rel, ns))
    rules = [{"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"],
              "verbs": ["create", "get", "list", "watch", "delete"]}]
    install(kube, rel, ns, values_file(tmp_path, {**BASIC, "rbac": {"extraRules": rules}}))
    sa = kube.sa_kubeconfig(ns, _agent_sa(kube, ns, rel))
    assert kube.can_i(sa, "create", pytorchjob_crd, ns)
    assert kube.can_i(sa, "watch", pytorchjob_crd, ns)
    assert not kube.can_i(sa, "create", pytorchjob_crd, outside)
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "run-1"},
           "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": {"spec": {
               "containers": [{"name": "pytorch", "image": "pytorch/pytorch:2.4.0"}]}}}}}}
    kube.kubectl("create", "-n", ns, "-f", "-", input_text=json.dumps(job), kubeconfig_path=sa)
    assert kube.get("pytorchjobs.kubeflow.org", "run-1", namespace=ns)["kind"] == "PyTorchJob"
    kube.kubectl("delete", "pytorchjobs.kubeflow.org", "run-1", "-n", ns, kubeconfig_path=sa)


# --- Pod Security, evictions, drain --------------------------------------------------------------

def test_agent_is_admitted_under_restricted_pod_security_without_warnings(
    kube: Kube, namespace, release, tmp_path: Path
) -> None:
    levels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
    ns = namespace("psa", labels=levels)
    rel = release_name("psa")
    release.append((rel, ns))
    proc = install(kube, rel, ns, values_file(tmp_path, BASIC))
    assert "PodSecurity" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    _ready_agents(kube, ns, rel)
    events = kube.get("events", namespace=ns)
    assert not [e for e in events if e.get("reason") == "FailedCreate"], events


def _evict(kube: Kube, ns: str, pod: str) -> None:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": ns}}
    kube.kubectl("create", "--raw", f"/api/v1/namespaces/{ns}/pods/{pod}/eviction", "-f", "-",
                 input_text=json.dumps(body))


@pytest.mark.parametrize("replicas", [1, 2])
def test_evicting_the_agent_pod_is_allowed(kube: Kube, namespace, release, tmp_path: Path, replicas: int) -> None:
    ns = namespace("evict")
    rel = release_name("ev")
    release.append((rel, ns))
    install(kube, rel, ns, values_file(tmp_path, {**BASIC, "replicas": replicas}))
    victim = _ready_agents(kube, ns, rel, replicas)[0]["metadata"]["name"]
    _evict(kube, ns, victim)
    kube.wait_for("the evicted pod to be replaced",
                  lambda: victim not in {p["metadata"]["name"] for p in _ready_agents(kube, ns, rel, replicas)})


def test_draining_the_agents_node_completes(kube: Kube, namespace, release, tmp_path: Path) -> None:
    ns = namespace("drain")
    rel = release_name("dr")
    release.append((rel, ns))
    install(kube, rel, ns, values_file(tmp_path, BASIC))
    node = _ready_agents(kube, ns, rel)[0]["spec"]["nodeName"]
    try:
        kube.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s")
        if len(kube.get("nodes")) > 1:  # the agent comes back on another node
            assert _ready_agents(kube, ns, rel)[0]["spec"]["nodeName"] != node
    finally:
        kube.kubectl("uncordon", node)


def test_chart_dir_is_the_one_under_test() -> None:
    assert (CHART / "Chart.yaml").is_file() and CI_VALUES
