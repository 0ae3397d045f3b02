"""The local control plane behaves like a cluster: pinned version, schedulable nodes, Jobs
that finish as their pods' annotations say, real admission and RBAC, and side-by-side runs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cluster_helpers import is_ready, kwok_nodes

from localenv import cluster, kwok, tools
from localenv.pytest_plugin import Kube


@pytest.fixture(autouse=True)
def _only_on_localenv(kube: Kube) -> None:
    """These tests are about localenv itself; with --kubeconfig (kind, a real cluster) they do not apply."""
    if kube.state is None:
        pytest.skip("checks localenv itself; this session uses a cluster given by --kubeconfig")


def _job(name: str, annotations: dict[str, str] | None = None, ttl: int | None = None) -> dict:
    spec: dict = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"annotations": annotations or {}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}],
            },
        },
    }
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def _job_condition(kube: Kube, ns: str, name: str) -> str | None:
    job = kube.get("job", name, namespace=ns)
    for cond in job.get("status", {}).get("conditions", []):
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return cond["type"]
    return None


def test_server_is_the_pinned_release(kube: Kube) -> None:
    kube_tool = next(t for t in tools.TOOLS if t.name == "kubernetes")
    pinned = tools.required_version(kube_tool.module_dir, "k8s.io/kubernetes")
    version = json.loads(kube.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == pinned
    assert kube.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_fake_nodes_are_ready_without_taints(kube: Kube) -> None:
    nodes = [n for n in kube.get("nodes") if n["metadata"]["name"] in kwok_nodes(kube)]
    assert nodes
    for node in nodes:
        conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conds["Ready"] == "True"
        assert not node["spec"].get("taints")


def test_deployment_pods_are_scheduled_and_ready(kube: Kube, namespace) -> None:
    ns = namespace()
    kube.kubectl("create", "deployment", "web", "--image=nginx:1.27", "--replicas=2", "-n", ns)
    kube.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=120s")
    pods = kube.get("pods", namespace=ns, selector="app=web")
    assert len(pods) == 2 and all(is_ready(p) for p in pods)
    assert {p["spec"]["nodeName"] for p in pods} <= kwok_nodes(kube)


def test_jobs_finish_as_annotated(kube: Kube, namespace) -> None:
    ns = namespace()
    kube.apply([
        _job("ok"),
        _job("fails", {kwok.OUTCOME: "fail"}),
        _job("long", {kwok.RUN_SECONDS: "3600"}),
        _job("forever", {kwok.OUTCOME: "keep-running"}),
    ], namespace=ns)
    kube.wait_for("Job ok to complete", lambda: _job_condition(kube, ns, "ok") == "Complete")
    kube.wait_for("Job fails to fail", lambda: _job_condition(kube, ns, "fails") == "Failed")
    failed = kube.get("pods", namespace=ns, selector="job-name=fails")
    assert failed[0]["status"]["phase"] == "Failed"
    assert failed[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    # The two others started together with "ok" and "fails" and are still running.
    for name in ("long", "forever"):
        pods = kube.get("pods", namespace=ns, selector=f"job-name={name}")
        assert len(pods) == 1 and is_ready(pods[0]), name
        assert _job_condition(kube, ns, name) is None


def _cr(api_version: str, kind: str, name: str, annotations: dict[str, str] | None = None) -> dict:
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "annotations": annotations or {}}, "spec": {}}


def _true_conditions(obj: dict) -> set[str]:
    return {c["type"] for c in (obj.get("status") or {}).get("conditions", []) if c.get("status") == "True"}


def test_annotated_workload_custom_resources_get_their_operators_status(kube: Kube, namespace) -> None:
    ns = namespace()
    kube.apply([
        _cr("kubeflow.org/v1", "PyTorchJob", "pt-ok", {kwok.RUN_SECONDS: "1"}),
        _cr("kubeflow.org/v1", "PyTorchJob", "pt-fail", {kwok.OUTCOME: "fail"}),
        _cr("kubeflow.org/v1", "PyTorchJob", "pt-long", {kwok.RUN_SECONDS: "3600"}),
        _cr("kubeflow.org/v1", "PyTorchJob", "pt-plain"),
        _cr("batch.volcano.sh/v1alpha1", "Job", "vc-ok", {kwok.RUN_SECONDS: "1"}),
        _cr("batch.volcano.sh/v1alpha1", "Job", "vc-fail", {kwok.OUTCOME: "fail"}),
    ], namespace=ns)

    def pt(name: str) -> set[str]:
        return _true_conditions(kube.get("pytorchjobs.kubeflow.org", name, namespace=ns))

    def vc_phase(name: str) -> str | None:
        status = kube.get("jobs.batch.volcano.sh", name, namespace=ns).get("status") or {}
        return (status.get("state") or {}).get("phase")

    kube.wait_for("PyTorchJob pt-ok to succeed", lambda: pt("pt-ok") == {"Created", "Succeeded"})
    kube.wait_for("PyTorchJob pt-fail to fail", lambda: pt("pt-fail") == {"Created", "Failed"})
    kube.wait_for("Volcano Job vc-ok to complete", lambda: vc_phase("vc-ok") == "Completed")
    kube.wait_for("Volcano Job vc-fail to fail", lambda: vc_phase("vc-fail") == "Failed")
    assert pt("pt-long") == {"Created", "Running"}
    # Without the annotations the status is left to whoever plays the operator (a test).
    assert kube.get("pytorchjobs.kubeflow.org", "pt-plain", namespace=ns).get("status") in (None, {})


def test_finished_jobs_are_cleaned_up_by_ttl_and_garbage_collection(kube: Kube, namespace) -> None:
    ns = namespace()
    kube.apply(_job("short", ttl=0), namespace=ns)
    kube.wait_for("the TTL controller to delete Job short",
                  lambda: not kube.kubectl("get", "job", "short", "-n", ns, "--ignore-not-found", "-o", "name").stdout.strip())
    kube.wait_for("the garbage collector to delete its pod",
                  lambda: not kube.get("pods", namespace=ns, selector="job-name=short"))


def test_pod_security_admission_enforces_restricted(kube: Kube, namespace) -> None:
    ns = namespace(labels={"pod-security.kubernetes.io/enforce": "restricted"})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}]}}
    proc = kube.kubectl("apply", "-n", ns, "-f", "-", input_text=json.dumps(pod), check=False)
    assert proc.returncode != 0
    assert "violates PodSecurity" in proc.stderr


def test_minted_service_account_kubeconfig_has_only_that_identity(kube: Kube, namespace) -> None:
    ns = namespace()
    kube.kubectl("create", "serviceaccount", "reader", "-n", ns)
    kube.kubectl("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", ns)
    kube.kubectl("create", "rolebinding", "pod-reader", "--role=pod-reader", f"--serviceaccount={ns}:reader", "-n", ns)
    sa = kube.sa_kubeconfig(ns, "reader")
    who = json.loads(kube.kubectl("auth", "whoami", "-o", "json", kubeconfig_path=sa).stdout)
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:reader"
    assert kube.can_i(sa, "list", "pods", ns)
    assert not kube.can_i(sa, "create", "pods", ns)
    assert not kube.can_i(sa, "list", "pods", "default")
    denied = kube.kubectl("get", "secrets", "-n", ns, kubeconfig_path=sa, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localenv", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_a_second_localenv_runs_beside_the_first_from_the_cli(kube: Kube, tmp_path: Path) -> None:
    state_dir = tmp_path / "second"
    up = _cli("up", "--state-dir", str(state_dir), "--nodes", "1", "--no-real-node")
    try:
        assert up.returncode == 0, up.stderr
        exports = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines()
                       if line.startswith("export ") and not line.startswith("export PATH="))
        kubeconfig_path = Path(exports["KUBECONFIG"])
        assert kubeconfig_path == state_dir.resolve() / "kubeconfig"
        assert _cli("env", "--state-dir", str(state_dir)).stdout == up.stdout
        assert _cli("status", "--state-dir", str(state_dir)).returncode == 0
        state = cluster.State.load(state_dir.resolve())
        assert state is not None and state.server != (kube.state.server if kube.state else "")
        marker = f"only-in-second-{uuid.uuid4().hex[:6]}"
        kube.kubectl("create", "namespace", marker, kubeconfig_path=kubeconfig_path)
        assert kube.kubectl("get", "namespace", marker, "--ignore-not-found", "-o", "name").stdout.strip() == ""
        if cluster.emulator_available():
            assert state.emulator_url and "WANDB_BASE_URL" in exports
            host, port = state.emulator_url.removeprefix("http://").split(":")
            socket.create_connection((host, int(port)), timeout=5).close()
    finally:
        down = _cli("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert not state_dir.exists()
    assert all(not cluster.is_ours(pid, state_dir.resolve()) for pid in state.pids.values())
    assert _cli("status", "--state-dir", str(state_dir)).returncode == 1
    assert kube.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
