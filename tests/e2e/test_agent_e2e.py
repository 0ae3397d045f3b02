"""The agent end to end: the W&B emulator, the local control plane (kwok runs and completes the
pods), and `python -m agent` as a separate process with a ServiceAccount token bound to the
chart's documented RBAC (docs/interfaces.md). Custom resources get minimal CRDs; the test plays
their operator by writing the status the real operator would write."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentproc import agent_command, agent_env

from agent.manifest import LABEL_AGENT, LABEL_RUN_ID, ManifestSettings, build_workload
from localenv import crds as workload_crds
from localenv.wandb_emulator import start_emulator
from localenv.wandb_emulator.testing import EntityAdmin as Emu

pytestmark = pytest.mark.e2e

ENTITY = "acme"
TIMEOUT = 180.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emu]:
    server, key = start_emulator(entity=ENTITY, username=ENTITY)
    try:
        yield Emu(server.url, key, ENTITY)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def crds(kube) -> None:
    kube.apply(list(workload_crds.ALL))
    for name in ("pytorchjobs.kubeflow.org", "jobs.batch.volcano.sh"):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=120s")


def role_rules(secret: str) -> list[dict[str, Any]]:
    verbs = ["create", "get", "list", "watch", "patch", "delete"]
    return [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": verbs},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": [secret]},
        {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": verbs},
        {"apiGroups": ["batch.volcano.sh"], "resources": ["jobs"], "verbs": verbs},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "get"]},  # additional_services
    ]


@dataclass
class Site:
    """One install: an agent namespace, a target namespace, the agent's ServiceAccount + RBAC."""

    kube: Any
    emu: Emu
    agent_ns: str
    jobs_ns: str
    release: str
    kubeconfig: Path
    workdir: Path
    procs: list[AgentProc] = field(default_factory=list)

    @property
    def secret(self) -> str:
        return f"wandb-api-key-{self.release}"

    def agent(self, queues: list[str], *, config: str = "", env: dict[str, str] | None = None,
              python: str = sys.executable, pythonpath: str | None = None) -> AgentProc:
        proc = AgentProc(self, queues, config, env or {}, python, pythonpath)
        self.procs.append(proc)
        return proc.start()

    def jobs(self, selector: str = "") -> list[dict[str, Any]]:
        return self.kube.get("jobs.batch", namespace=self.jobs_ns, selector=selector or None)

    def settings(self) -> ManifestSettings:
        return ManifestSettings(agent_namespace=self.agent_ns, target_namespaces=(self.jobs_ns,),
                                api_key_secret=self.secret, agent_identity=self.release, queue_entity=ENTITY)


@pytest.fixture
def site(kube, namespace, emu, crds, tmp_path, secret_scan) -> Iterator[Site]:
    release = f"r{uuid.uuid4().hex[:6]}"
    agent_ns, jobs_ns = namespace("agent"), namespace("jobs")
    secret = f"wandb-api-key-{release}"
    sa = f"wandb-launch-serviceaccount-{release}"
    objs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "ServiceAccount",
                                   "metadata": {"name": sa, "namespace": agent_ns}}]
    for ns in (agent_ns, jobs_ns):
        objs += [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": ns},
             "type": "kubernetes.io/basic-auth", "stringData": {"password": emu.key}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": f"launch-agent-{release}", "namespace": ns}, "rules": role_rules(secret)},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": f"launch-agent-{release}", "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": f"launch-agent-{release}"},
             "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": agent_ns}]},
        ]
    objs += [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": f"launch-agent-lease-{release}", "namespace": agent_ns},
         "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                    "verbs": ["get", "create", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"launch-agent-lease-{release}", "namespace": agent_ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": f"launch-agent-lease-{release}"},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": agent_ns}]},
    ]
    kube.apply(objs)
    s = Site(kube, emu, agent_ns, jobs_ns, release, kube.sa_kubeconfig(agent_ns, sa), tmp_path)
    try:
        yield s
    finally:
        for proc in s.procs:
            proc.kill()
        scan = secret_scan(emu.key)  # the key never leaves its Secret: logs, requests, objects
        for proc in s.procs:
            scan.text(proc.log.name, proc.text())
        scan.objects("emulator requests", emu.admin("GET", "/requests") or [])
        scan.cluster(kube, [agent_ns, jobs_ns], holders=[secret])


class AgentProc:
    def __init__(self, site: Site, queues: list[str], config: str, env: dict[str, str], python: str,
                 pythonpath: str | None) -> None:
        self.site = site
        self.n = len(site.procs)
        self.cfg = site.workdir / f"launch-config-{self.n}.yaml"
        self.cfg.write_text(config or f"entity: {ENTITY}\nqueues: {json.dumps(queues)}\nmax_jobs: 5\n")
        self.log = site.workdir / f"agent-{self.n}.log"
        self.env = env
        self.python = python
        self.pythonpath = pythonpath
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> AgentProc:
        env = agent_env(
            home=self.site.workdir, api_key=self.site.emu.key, base_url=self.site.emu.url,
            release=self.site.release, agent_ns=self.site.agent_ns, jobs_ns=self.site.jobs_ns,
            pod_name=f"agent-{self.n}", poll_interval="0.5",
            settings={"LAUNCH_AGENT_WORKLOAD_KINDS": "kubeflow.org/v1/PyTorchJob,batch.volcano.sh/v1alpha1/Job"},
            overrides=self.env, pythonpath=self.pythonpath)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(agent_command(self.cfg, self.site.kubeconfig, self.python),
                                         stdout=out, stderr=subprocess.STDOUT, env=env)
        self.port = int(wait_for(f"agent {self.n} health port", self._port, 60))
        return self

    def _port(self) -> str | None:
        for line in self.text().splitlines():
            if "health endpoints on port" in line:
                return re.search(r"health endpoints on port (\d+)", line).group(1)  # type: ignore[union-attr]
        assert self.proc is not None and self.proc.poll() is None, f"agent exited:\n{self.text()}"
        return None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def metric(self, line_start: str) -> float:
        for line in self.metrics().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def job_queue(site: Site, name: str, *, annotations: dict[str, str] | None = None,
              pod_spec: dict[str, Any] | None = None) -> str:
    queue = f"{name}-{site.release}"
    spec = {"containers": [{"resources": {"requests": {"cpu": "100m"}}}], **(pod_spec or {})}
    site.emu.queue(queue, {"metadata": {"namespace": site.jobs_ns},
                           "spec": {"template": {"metadata": {"annotations": annotations or {}}, "spec": spec}}})
    return queue


def run_spec(run_id: str, **extra: Any) -> dict[str, Any]:
    return {"entity": ENTITY, "project": "proj", "run_id": run_id, "resource": "kubernetes",
            "docker": {"docker_image": "busybox:1.36"}, **extra}


def job_of(site: Site, run_id: str) -> dict[str, Any] | None:
    jobs = site.jobs(f"{LABEL_RUN_ID}={run_id}")
    return jobs[0] if jobs else None


def condition(obj: dict[str, Any] | None, ctype: str) -> bool:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == ctype and c.get("status") == "True" for c in conds)


# ------------------------------------------------------------------------------------------------


def test_job_queue_runs_to_completion_and_failure_is_reported(site):
    ok_q = job_queue(site, "jobs", annotations={"localenv.launch-agent.dev/run-seconds": "2"})
    bad_q = job_queue(site, "bad", annotations={"localenv.launch-agent.dev/outcome": "fail"})
    ok = [site.emu.enqueue(ok_q, run_spec(f"ok{i}-{site.release}")) for i in range(2)]
    bad = site.emu.enqueue(bad_q, run_spec(f"bad-{site.release}"))
    agent = site.agent([ok_q, bad_q])
    wait_for("both Jobs complete", lambda: all(condition(job_of(site, f"ok{i}-{site.release}"), "Complete")
                                                 for i in range(2)))
    wait_for("the failed run reported", lambda: site.emu.item(bad)["state"] == "FAILED")
    error = site.emu.item(bad)["error"]
    assert error["stage"] == "run" and "failed" in error["message"]
    wait_for("finished runs counted", lambda: agent.metric(
        f'launch_agent_items_finished_total{{queue="{ok_q}",state="finished"}}') == 2)
    for item_id in ok:
        got = site.emu.item(item_id)
        assert got["state"] == "LEASED" and got["associated_run_id"]  # acked once, never failed
    job = job_of(site, f"ok0-{site.release}")
    assert job is not None
    assert job["metadata"]["labels"][LABEL_AGENT] == site.release
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 60
    c = job["spec"]["template"]["spec"]["containers"][0]
    key = next(e for e in c["env"] if e["name"] == "WANDB_API_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": site.secret, "key": "password"}
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert site.emu.key not in json.dumps(site.jobs())
    assert site.emu.key not in agent.text()
    metrics = agent.metrics()
    assert 'launch_agent_kube_request_seconds_count{verb="create"} 3' in metrics
    assert f'launch_agent_items_failed_total{{queue="{bad_q}",stage="run"}} 1' in metrics
    assert 'launch_agent_backend_request_seconds_count{operation="popFromRunQueue"}' in metrics
    assert agent.terminate() == 0


def test_pytorchjob_and_volcano_queues(site):
    pt_q = f"pytorch-{site.release}"
    site.emu.queue(pt_q, {
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "metadata": {"name": "pytorch-${run_id}", "namespace": site.jobs_ns},
        "spec": {"pytorchReplicaSpecs": {
            "Master": {"replicas": 1, "template": {"spec": {"containers": [{"name": "pytorch",
                                                                            "image": "${image_uri}"}]}}},
            "Worker": {"replicas": 2, "template": {"spec": {"containers": [{"name": "pytorch",
                                                                            "image": "${image_uri}"}]}}}}}})
    vc_q = f"volcano-{site.release}"
    site.emu.queue(vc_q, {
        "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
        "metadata": {"namespace": site.jobs_ns},
        "spec": {"minAvailable": 1, "schedulerName": "volcano", "tasks": [{"name": "w", "replicas": 1,
                 "template": {"spec": {"restartPolicy": "Never", "containers": [{"image": "${image_uri}"}]}}}]}})
    pt_ok = site.emu.enqueue(pt_q, run_spec(f"pt1-{site.release}"))
    pt_bad = site.emu.enqueue(pt_q, run_spec(f"pt2-{site.release}"))
    vc_ok = site.emu.enqueue(vc_q, run_spec(f"vc1-{site.release}"))
    agent = site.agent([pt_q, vc_q])

    def cr(kind: str, run_id: str) -> dict[str, Any] | None:
        items = site.kube.get(kind, namespace=site.jobs_ns, selector=f"{LABEL_RUN_ID}={run_id}")
        return items[0] if items else None

    pt1 = wait_for("PyTorchJob 1", lambda: cr("pytorchjobs.kubeflow.org", f"pt1-{site.release}"))
    pt2 = wait_for("PyTorchJob 2", lambda: cr("pytorchjobs.kubeflow.org", f"pt2-{site.release}"))
    vc1 = wait_for("Volcano Job", lambda: cr("jobs.batch.volcano.sh", f"vc1-{site.release}"))
    assert pt1["metadata"]["name"] == f"pytorch-pt1-{site.release}"
    for role in ("Master", "Worker"):
        tmpl = pt1["spec"]["pytorchReplicaSpecs"][role]["template"]
        assert tmpl["metadata"]["labels"][LABEL_RUN_ID] == f"pt1-{site.release}"
        c = tmpl["spec"]["containers"][0]
        assert c["image"] == "busybox:1.36"
        key = next(e for e in c["env"] if e["name"] == "WANDB_API_KEY")
        assert "value" not in key and key["valueFrom"]["secretKeyRef"]["name"] == site.secret
    assert site.emu.key not in json.dumps(pt1) + json.dumps(vc1)

    def status(kind: str, name: str, body: dict[str, Any]) -> None:
        site.kube.kubectl("patch", kind, name, "-n", site.jobs_ns, "--subresource=status", "--type=merge",
                          "-p", json.dumps({"status": body}))

    def conds(*types: str) -> dict[str, Any]:
        return {"conditions": [{"type": t, "status": "True", "reason": f"PyTorchJob{t}", "message": f"job {t}"}
                               for t in types]}

    status("pytorchjobs.kubeflow.org", pt1["metadata"]["name"], conds("Created", "Running"))
    status("jobs.batch.volcano.sh", vc1["metadata"]["name"], {"state": {"phase": "Running"}})
    wait_for("runs seen running", lambda: agent.metric(f'launch_agent_running{{queue="{pt_q}"}}') == 2
             and "is running" in agent.text())
    status("pytorchjobs.kubeflow.org", pt1["metadata"]["name"], conds("Created", "Running", "Succeeded"))
    status("pytorchjobs.kubeflow.org", pt2["metadata"]["name"], conds("Created", "Failed"))
    status("jobs.batch.volcano.sh", vc1["metadata"]["name"], {"state": {"phase": "Completed"}})
    wait_for("PyTorchJob failure reported", lambda: site.emu.item(pt_bad)["state"] == "FAILED")
    assert "PyTorchJob" in site.emu.item(pt_bad)["error"]["message"]
    wait_for("all finished", lambda: agent.metric(
        f'launch_agent_items_finished_total{{queue="{pt_q}",state="finished"}}') == 1 and agent.metric(
        f'launch_agent_items_finished_total{{queue="{vc_q}",state="finished"}}') == 1)
    assert site.emu.item(pt_ok)["state"] == "LEASED" and site.emu.item(vc_ok)["state"] == "LEASED"
    assert agent.terminate() == 0


def test_stop_request_deletes_the_workload_and_its_pods(site):
    q = job_queue(site, "stop", annotations={"localenv.launch-agent.dev/outcome": "keep-running"})
    run_id = f"stop-{site.release}"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "tb-${run_id}"},
               "spec": {"ports": [{"port": 6006}], "selector": {LABEL_RUN_ID: "${run_id}"}}}
    item = site.emu.enqueue(q, run_spec(run_id, additional_services=[{"config": service}]))
    agent = site.agent([q], config=f"entity: {ENTITY}\nqueues: [{q}]\nstopped_run_timeout: 0\n")
    wait_for("pod running", lambda: any(p["status"].get("phase") == "Running" for p in site.kube.get(
        "pods", namespace=site.jobs_ns, selector=f"{LABEL_RUN_ID}={run_id}")))
    svc = site.kube.get("services", f"tb-{run_id}", namespace=site.jobs_ns)
    assert svc["metadata"]["labels"][LABEL_RUN_ID] == run_id
    (owner,) = svc["metadata"]["ownerReferences"]
    assert owner["kind"] == "Job" and owner["uid"] == job_of(site, run_id)["metadata"]["uid"]
    site.emu.set_run(ENTITY, "proj", run_id, stopped=True)
    wait_for("Job deleted", lambda: job_of(site, run_id) is None)
    wait_for("its Service collected with it", lambda: not site.kube.get(
        "services", namespace=site.jobs_ns, selector=f"{LABEL_RUN_ID}={run_id}"))
    wait_for("pods deleted with it", lambda: not site.kube.get("pods", namespace=site.jobs_ns,
                                                                selector=f"{LABEL_RUN_ID}={run_id}"))
    wait_for("stop counted", lambda: agent.metric(
        f'launch_agent_items_finished_total{{queue="{q}",state="stopped"}}') == 1)
    assert site.emu.item(item)["state"] != "FAILED"
    assert agent.terminate() == 0


def test_restart_mid_run_readopts_and_never_launches_twice(site):
    q = job_queue(site, "restart", annotations={"localenv.launch-agent.dev/outcome": "keep-running"})
    fail_q = job_queue(site, "restartfail", annotations={"localenv.launch-agent.dev/run-seconds": "8",
                                                         "localenv.launch-agent.dev/outcome": "fail"})
    long_run, ends_while_down = f"long-{site.release}", f"down-{site.release}"
    site.emu.enqueue(q, run_spec(long_run))
    down_item = site.emu.enqueue(fail_q, run_spec(ends_while_down))
    first = site.agent([q, fail_q])
    wait_for("both launched", lambda: job_of(site, long_run) and job_of(site, ends_while_down))
    assert first.terminate() == 0  # SIGTERM: exit 0, workloads keep running
    assert job_of(site, long_run) is not None
    wait_for("run failed while the agent was down", lambda: condition(job_of(site, ends_while_down), "Failed"))
    assert site.emu.item(down_item)["state"] == "LEASED"

    # An item popped again (its claim expired) whose Job already exists: 409 -> adopted, not duplicated.
    dup_run = f"dup-{site.release}"
    dup_item = site.emu.enqueue(q, run_spec(dup_run))
    objs = build_workload(run_spec(dup_run) | {"resource_args": {"kubernetes": {
        "metadata": {"namespace": site.jobs_ns}, "spec": {"template": {"metadata": {"annotations": {
            "localenv.launch-agent.dev/outcome": "keep-running"}}}}}}},
        item_id=dup_item, queue=q, settings=site.settings())
    site.kube.apply(objs)

    second = site.agent([q, fail_q])
    wait_for("failure that happened while down is reported", lambda: site.emu.item(down_item)["state"] == "FAILED")
    wait_for("long run re-adopted", lambda: f"re-adopted Job {site.jobs_ns}/" in second.text()
             and long_run in second.text())
    wait_for("dup item adopted", lambda: site.emu.item(dup_item)["state"] == "LEASED")
    assert len(site.jobs(f"{LABEL_RUN_ID}={dup_run}")) == 1
    assert "was launched already" in second.text()
    assert len(site.jobs(f"{LABEL_RUN_ID}={long_run}")) == 1
    assert second.metric(f'launch_agent_items_launched_total{{queue="{q}"}}') == 0
    assert second.metric(f'launch_agent_running{{queue="{q}"}}') == 2
    assert second.terminate() == 0


def test_unschedulable_run_warns_once_then_times_out(site):
    q = job_queue(site, "pending", pod_spec={"nodeSelector": {"gpu": "h100-that-does-not-exist"}})
    item = site.emu.enqueue(q, run_spec(f"pend-{site.release}"))
    agent = site.agent([q], env={"WANDB_LAUNCH_START_TIMEOUT": "8"})
    wait_for("item failed by the start timeout", lambda: site.emu.item(item)["state"] == "FAILED")
    got = site.emu.item(item)
    assert "did not start within 8s" in got["error"]["message"]
    assert "Unschedulable" in got["error"]["message"]
    warnings = [w["message"] for w in got["warnings"]]
    assert len(warnings) == 1 and "Unschedulable" in warnings[0]
    wait_for("Job deleted", lambda: job_of(site, f"pend-{site.release}") is None)
    assert agent.terminate() == 0


def test_a_name_taken_by_another_item_is_never_adopted(site):
    q = f"fixed-{site.release}"
    site.emu.queue(q, {"metadata": {"name": "always-the-same", "namespace": site.jobs_ns}, "spec": {"template": {
        "metadata": {"annotations": {"localenv.launch-agent.dev/outcome": "keep-running"}}}}})
    first = site.emu.enqueue(q, run_spec(f"f1-{site.release}"))
    second = site.emu.enqueue(q, run_spec(f"f2-{site.release}"))
    runs = {first: f"f1-{site.release}", second: f"f2-{site.release}"}
    agent = site.agent([q])
    # Both items are popped and launched side by side: whichever creates the name first holds it;
    # the other is refused naming the holder, and is never adopted as if the Job were its own.
    wait_for("one refused", lambda: "FAILED" in {site.emu.item(i)["state"] for i in runs})
    (refused,) = [i for i in runs if site.emu.item(i)["state"] == "FAILED"]
    (holder,) = [i for i in runs if i != refused]
    msg = site.emu.item(refused)["error"]["message"]
    assert "409" in msg and "always-the-same" in msg and holder in msg
    assert site.emu.item(holder)["state"] == "LEASED"
    (job,) = site.jobs(f"{LABEL_AGENT}={site.release}")
    assert job["metadata"]["labels"][LABEL_RUN_ID] == runs[holder]
    assert agent.terminate() == 0


def test_pods_pass_the_api_servers_pod_security_admission(site):
    """The real PodSecurity admission judges the pods: restricted namespace, restricted agent."""
    site.kube.kubectl("label", "namespace", site.jobs_ns, "pod-security.kubernetes.io/enforce=restricted",
                      "--overwrite")
    q = job_queue(site, "psa", annotations={"localenv.launch-agent.dev/run-seconds": "1"})
    bad_q = f"psa-root-{site.release}"
    site.emu.queue(bad_q, {"metadata": {"namespace": site.jobs_ns}, "spec": {"template": {"spec": {
        "securityContext": {"runAsUser": 0}, "containers": [{}]}}}})
    ok = site.emu.enqueue(q, run_spec(f"psa-{site.release}"))
    refused = site.emu.enqueue(bad_q, run_spec(f"psa-root-{site.release}"))
    agent = site.agent([q, bad_q], env={"LAUNCH_AGENT_SECURITY_LEVEL": "restricted"})
    wait_for("Job complete under restricted PSA", lambda: condition(job_of(site, f"psa-{site.release}"),
                                                                    "Complete"))
    pod_spec = job_of(site, f"psa-{site.release}")["spec"]["template"]["spec"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    wait_for("root refused before creation", lambda: site.emu.item(refused)["state"] == "FAILED")
    assert "pod-security-restricted" in site.emu.item(refused)["error"]["message"]
    assert job_of(site, f"psa-root-{site.release}") is None
    assert site.emu.item(ok)["state"] == "LEASED"
    assert agent.terminate() == 0


def test_quota_that_blocks_pods_is_reported(site):
    site.kube.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods"},
                     "spec": {"hard": {"pods": "0"}}}, namespace=site.jobs_ns)
    q = job_queue(site, "quota")
    item = site.emu.enqueue(q, run_spec(f"quota-{site.release}"))
    agent = site.agent([q], env={"WANDB_LAUNCH_START_TIMEOUT": "20"})
    wait_for("quota warning", lambda: any("exceeded quota" in w["message"]
                                          for w in site.emu.item(item)["warnings"]))
    wait_for("timed out", lambda: site.emu.item(item)["state"] == "FAILED")
    assert "exceeded quota" in site.emu.item(item)["error"]["message"]
    assert agent.terminate() == 0


def test_forbidden_namespace_and_missing_rbac_reach_the_user(site, namespace):
    other = namespace("noperm")
    q = f"other-{site.release}"
    site.emu.queue(q, {"metadata": {"namespace": other}})
    refused = site.emu.enqueue(q, run_spec(f"ns-{site.release}"))
    # a JobSet is not served by this cluster at all
    js_q = f"jobset-{site.release}"
    site.emu.queue(js_q, {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                          "metadata": {"namespace": site.jobs_ns},
                          "spec": {"replicatedJobs": [{"name": "w", "template": {"spec": {"template": {
                              "spec": {"containers": [{"image": "${image_uri}"}]}}}}}]}})
    missing = site.emu.enqueue(js_q, run_spec(f"js-{site.release}"))
    agent = site.agent([q, js_q], env={"LAUNCH_AGENT_TARGET_NAMESPACES": f"{site.jobs_ns},{other}"})
    wait_for("both failed", lambda: site.emu.item(refused)["state"] == "FAILED"
             and site.emu.item(missing)["state"] == "FAILED")
    msg = site.emu.item(refused)["error"]["message"]
    assert msg.startswith("403: cannot create Job") and other in msg and "not allowed" in msg
    assert "JobSet" in site.emu.item(missing)["error"]["message"]
    assert agent.terminate() == 0


def test_two_replicas_one_leader(site):
    q = job_queue(site, "ha", annotations={"localenv.launch-agent.dev/run-seconds": "1"})
    env = {"LAUNCH_AGENT_LEADER_ELECTION": "true", "LAUNCH_AGENT_LEASE_NAME": f"la-{site.release}"}
    a = site.agent([q], env=env)
    wait_for("a leads", lambda: "acquired lease" in a.text())
    b = site.agent([q], env=env)
    wait_for("b waits", lambda: "waiting for lease" in b.text())
    first = site.emu.enqueue(q, run_spec(f"ha1-{site.release}"))
    wait_for("first run done", lambda: condition(job_of(site, f"ha1-{site.release}"), "Complete"))
    assert "acquired lease" not in b.text() and "registered as launch agent" not in b.text()
    assert httpx.get(f"http://127.0.0.1:{b.port}/readyz", timeout=5).status_code == 200
    a.kill()  # a crash: no release; b takes over once the lease expires
    wait_for("b leads", lambda: "acquired lease" in b.text() and "registered as launch agent" in b.text())
    second = site.emu.enqueue(q, run_spec(f"ha2-{site.release}"))
    wait_for("second run done", lambda: condition(job_of(site, f"ha2-{site.release}"), "Complete"))
    assert site.emu.item(first)["state"] == "LEASED" and site.emu.item(second)["state"] == "LEASED"
    lease = site.kube.get("leases.coordination.k8s.io", f"la-{site.release}", namespace=site.agent_ns)
    assert lease["spec"]["holderIdentity"] == "agent-1"
    assert lease["spec"]["leaseTransitions"] >= 1
    assert b.terminate() == 0  # a clean stop gives the lease up
    lease = site.kube.get("leases.coordination.k8s.io", f"la-{site.release}", namespace=site.agent_ns)
    assert not lease["spec"].get("holderIdentity")


@pytest.fixture(scope="module")
def locked_venv(tmp_path_factory) -> tuple[str, str]:
    """Exactly agent/requirements.lock in a fresh venv, plus the agent and schema sources (as the image)."""
    import shutil

    root = tmp_path_factory.mktemp("locked")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    subprocess.run([str(root / "venv/bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--no-deps", "-r", str(Path(__file__).resolve().parents[2] / "agent" / "requirements.lock")],
                   check=True, timeout=900)
    src = Path(__file__).resolve().parents[2]
    for pkg in ("agent", "schemas"):
        shutil.copytree(src / pkg, root / "app" / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return str(root / "venv/bin/python"), str(root / "app")


def test_agent_from_the_locked_runtime_set(site, locked_venv):
    python, app = locked_venv
    q = job_queue(site, "locked", annotations={"localenv.launch-agent.dev/run-seconds": "1"})
    run_id = f"lock-{site.release}"
    item = site.emu.enqueue(q, run_spec(run_id))
    agent = site.agent([q], python=python, pythonpath=app, env={"LAUNCH_AGENT_LOG_FORMAT": "json"})
    wait_for("Job complete", lambda: condition(job_of(site, run_id), "Complete"))
    wait_for("finished", lambda: agent.metric(
        f'launch_agent_items_finished_total{{queue="{q}",state="finished"}}') == 1)
    assert site.emu.item(item)["state"] == "LEASED"
    assert agent.terminate() == 0
    lines = [json.loads(line) for line in agent.text().splitlines() if line.strip()]
    assert any("launched Job" in rec["message"] for rec in lines)
    assert all(set(rec) == {"time", "level", "logger", "message"} for rec in lines)
