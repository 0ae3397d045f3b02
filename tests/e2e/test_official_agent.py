"""Proof that the W&B emulator is honest: the official agent (``wandb launch-agent`` of the
pinned ``wandb`` release, unmodified) runs its whole item lifecycle against it.

Every GraphQL operation the official agent sends is checked against
tests/fixtures/official-agent-operations.json (tests/e2e/operations_fixture.py; the agent tests
fail on an operation the file does not list).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from official_agent import OfficialAgent, wait_until
from operations_fixture import OperationsFixture
from sweep_site import (
    GRID,
    RANDOM,
    SWEEP_ENV,
    OfficialScheduler,
    RunPlayer,
    install,
    job_queue,
    launch_sweep,
    parameter_sets,
    pushed_runs,
    wandb_env,
)

from agent.backend.operations import M_ACK, M_POP
from localenv import crds
from localenv.wandb_emulator.testing import EmulatorClient, EntityAdmin, running_emulator

pytestmark = pytest.mark.e2e

ENTITY = "e2e"
RUN_SECONDS = "localenv.launch-agent.dev/run-seconds"


@pytest.fixture
def emulator() -> Iterator[EmulatorClient]:
    with running_emulator() as emu:
        emu.client.create_entity(ENTITY)
        yield emu.client


def run_spec(run_id: str, image: str = "busybox:1.36") -> dict[str, Any]:
    return {
        "entity": ENTITY,
        "project": "demo",
        "run_id": run_id,
        "docker": {"docker_image": image},
        "overrides": {"args": [], "entry_point": ["sh", "-c", "echo hello"]},
    }


def stop_agent(emulator: EmulatorClient, agent: OfficialAgent, *, expect_exit: bool = True) -> None:
    """Ask the agent to stop through ``stopPolling`` and check it reports KILLED (and exits).

    With workloads still running (a custom resource that never finishes here), the official
    agent reports KILLED but its Kubernetes watch tasks keep the process alive; the caller
    then ends it.
    """
    (registered,) = emulator.agents()
    emulator.stop_agent(registered["id"])
    if expect_exit:
        code = agent.wait(60)
        assert code is not None, f"the official agent did not stop after stopPolling:\n{agent.log()[-3000:]}"
    else:
        wait_until(lambda: emulator.agents()[0]["status"] == "KILLED", 60, "the agent to report KILLED", agent)
    (after,) = emulator.agents()
    assert after["status"] == "KILLED", after["status_history"]


def test_official_agent_registers_polls_fails_an_unlaunchable_item_and_stops(
    emulator: EmulatorClient, tmp_path: Path, operations_fixture: OperationsFixture
) -> None:
    emulator.create_queue(ENTITY, "q1", {"metadata": {"namespace": "default"}})
    item = emulator.push(ENTITY, "q1", run_spec("nocluster1"))
    # No kubeconfig in the agent's HOME and no in-cluster config: the runner cannot reach a
    # cluster, so the agent must ack the item, then fail it at stage "agent" with its log.
    with OfficialAgent(tmp_path, emulator.url, emulator.api_key, ENTITY, ["q1"]) as agent:
        wait_until(lambda: emulator.item(item["id"])["state"] == "FAILED", 120, "the item to fail", agent)
        failed = emulator.item(item["id"])
        assert failed["associated_run_id"] == "nocluster1"
        assert failed["claim_count"] == 1 and failed["acked_at"] is not None
        assert failed["error"]["stage"] == "agent"
        (registered,) = emulator.agents()
        assert registered["name"].startswith("agent-") and len(registered["name"]) <= 63
        assert registered["queue_ids"] == [emulator.queues()[0]["id"]]
        log_path = f"{item['id']}/error/error.log"
        assert failed["error"]["filePaths"] == [log_path]
        uploaded = f"{ENTITY}/model-registry/{registered['name']}/{log_path}"
        wait_until(lambda: uploaded in emulator.files(), 60, "the error log upload", agent)
        assert emulator.upload(uploaded), "the uploaded error log is empty"
        # The agent's own run exists and is running (wandb.init against the emulator).
        assert emulator.run(ENTITY, "model-registry", registered["name"])["state"] == "running"
        wait_until(lambda: emulator.counts().get("popFromRunQueue", 0) >= 2, 60, "a second poll", agent)
        stop_agent(emulator, agent)
    counts = emulator.counts()
    for op in ("Viewer", "ProjectRunQueues", "createLaunchAgent", "EntityIsTeam", "LaunchAgent",
               "ackRunQueueItem", "failRunQueueItem", "UpsertBucket", "CreateRunFiles", "ServerFeaturesQuery"):
        assert counts.get(op), f"the official agent never sent {op}: {counts}"
    assert not [e for e in emulator.requests() if e["error"]], "every request was answered without error"
    operations_fixture.check("no-cluster", emulator.operations())


def test_official_client_creates_a_queue_pushes_and_reads_back(
    emulator: EmulatorClient, tmp_path: Path, operations_fixture: OperationsFixture
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_DIR=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path),
               WANDB_CACHE_DIR=str(tmp_path), WANDB_ERROR_REPORTING="false", **emulator.env())
    script = Path(__file__).with_name("official_client_script.py")
    proc = subprocess.run([sys.executable, str(script), ENTITY], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["type"] == "kubernetes" and seen["prioritization_mode"] == "V0"
    assert json.loads(seen["default_resource_config"]) == {
        "resource_args": {"kubernetes": {"metadata": {"namespace": "{{ns}}"}, "spec": {"parallelism": "{{workers}}"}}}
    }
    assert [v["name"] for v in seen["template_variables"]] == ["ns", "workers"]
    assert seen["items"] == seen["pushed"] and seen["states"] == ["pending", "pending"]
    operations_fixture.check("client", emulator.operations())
    low, high = (emulator.item(i) for i in seen["pushed"])
    assert low["run_spec"]["resource_args"]["kubernetes"] == {"metadata": {"namespace": "jobs"}, "spec": {"parallelism": 2}}
    assert (low["priority"], high["priority"]) == (3, 0)
    pop = ("mutation popFromRunQueue($entity: String!, $project: String!, $queueName: String!) {"
           " popFromRunQueue(input: {entityName: $entity, projectName: $project, queueName: $queueName})"
           " { runQueueItemId } }")
    first = emulator.graphql(pop, {"entity": ENTITY, "project": "model-registry", "queueName": "client-q"})
    assert first["data"]["popFromRunQueue"]["runQueueItemId"] == high["id"], "priority 0 is popped first"
    assert not [e for e in emulator.requests() if e["error"]], emulator.requests()


@pytest.mark.cluster
def test_official_agent_full_lifecycle_on_the_local_control_plane(
    emulator: EmulatorClient, tmp_path: Path, kube: Any, namespace: Any, operations_fixture: OperationsFixture
) -> None:
    ns = namespace("official")
    kube.apply(crds.PYTORCHJOB)
    kube.wait_for("the PyTorchJob CRD", lambda: kube.kubectl(
        "get", "crd", "pytorchjobs.kubeflow.org", "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    ).stdout == "True")
    emulator.create_queue(ENTITY, "jobs", {
        "metadata": {"namespace": ns, "labels": {"team": "ml"}},
        "spec": {"template": {
            "metadata": {"annotations": {RUN_SECONDS: "2"}},
            "spec": {"containers": [{"resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}]},
        }},
    })
    emulator.create_queue(ENTITY, "pytorch", {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "ptj-${run_id}", "namespace": ns},
        "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "Never", "template": {
            "metadata": {"annotations": {RUN_SECONDS: "2"}},
            "spec": {"containers": [{"name": "pytorch", "image": "${image_uri}"}]},
        }}}},
    })
    # The hook that stands for "the run called wandb.init": set before the agent polls, so
    # the agent's RunState check passes at once for this run and never for the other.
    emulator.set_run(ENTITY, "demo", "okrun1", state="running")
    ok = emulator.push(ENTITY, "jobs", run_spec("okrun1"))
    never = emulator.push(ENTITY, "jobs", run_spec("norun1"))
    torch = emulator.push(ENTITY, "pytorch", run_spec("torch1", image="pytorch/pytorch:2.5"))
    # The run's resource_args merge over the queue config: a node selector no node matches.
    stuck_spec = run_spec("stuck1")
    stuck_spec["resource_args"] = {"kubernetes": {"spec": {"template": {"spec": {"nodeSelector": {"pool": "none"}}}}}}
    stuck = emulator.push(ENTITY, "jobs", stuck_spec)

    with OfficialAgent(tmp_path, emulator.url, emulator.api_key, ENTITY, ["jobs", "pytorch"], max_jobs=4,
                       kubeconfig=Path(kube.kubeconfig)) as agent:
        (registered,) = wait_until(emulator.agents, 60, "the agent to register", agent)
        jobs = wait_until(lambda: kube.get("jobs", namespace=ns, selector="wandb.ai/run-id=okrun1"), 120,
                          "the Job of okrun1", agent)
        assert jobs[0]["metadata"]["labels"]["wandb.ai/agent"] == registered["name"]
        assert jobs[0]["metadata"]["labels"]["team"] == "ml", "the queue config reached the Job"
        assert emulator.item(ok["id"])["state"] == "LEASED"
        wait_until(lambda: kube.get("jobs", namespace=ns, selector="wandb.ai/run-id=norun1"), 120,
                   "the Job of norun1", agent)
        crs = wait_until(lambda: kube.get("pytorchjobs.kubeflow.org", namespace=ns), 120, "the PyTorchJob", agent)
        assert [cr["metadata"]["name"] for cr in crs] == ["ptj-torch1"]
        assert crs[0]["metadata"]["labels"]["wandb.ai/agent"] == registered["name"]
        assert emulator.item(torch["id"])["state"] == "LEASED"

        # kwok completes the Job's pod; the Job succeeds (and is deleted by its TTL a minute later).
        def ok_job_succeeded() -> bool:
            found = kube.get("jobs", namespace=ns, selector="wandb.ai/run-id=okrun1")
            return bool(found) and found[0].get("status", {}).get("succeeded") == 1

        wait_until(ok_job_succeeded, 120, "the Job of okrun1 to succeed", agent)

        # The unschedulable pod is reported as a warning on its item (stage "Kubernetes").
        stuck_jobs = wait_until(lambda: kube.get("jobs", namespace=ns, selector="wandb.ai/run-id=stuck1"), 120,
                                "the Job of stuck1", agent)
        pod_spec = stuck_jobs[0]["spec"]["template"]["spec"]
        assert pod_spec["nodeSelector"] == {"pool": "none"}
        assert pod_spec["containers"][0]["resources"]["limits"] == {"cpu": "100m", "memory": "64Mi"}
        warnings = wait_until(lambda: emulator.item(stuck["id"])["warnings"], 120, "the Unschedulable warning", agent)
        assert warnings[0]["stage"] == "Kubernetes" and warnings[0]["message"], warnings

        # The Job whose run never started is failed by the agent at stage "run" once its
        # RunState grace period (about a minute after the Job ends) is over.
        wait_until(lambda: emulator.item(never["id"])["state"] == "FAILED", 240, "norun1 to be failed", agent)
        error = emulator.item(never["id"])["error"]
        assert error["stage"] == "run", error
        assert "wandb.init" in error["message"] or "not successfully started" in error["message"], error

        # The started run's Job completed and the agent checked its run instead of failing it.
        def ok_run_checked() -> bool:
            return any(e["variables"].get("name") == "okrun1" for e in emulator.requests("RunState"))

        wait_until(ok_run_checked, 60, "the agent's RunState check of okrun1", agent)
        assert emulator.item(ok["id"])["state"] == "LEASED", "a run that started is never failed"
        emulator.set_run(ENTITY, "demo", "okrun1", state="finished")
        assert emulator.item(ok["id"])["state"] == "FINISHED"
        assert emulator.item(torch["id"])["state"] == "LEASED", "the PyTorchJob is still running"
        assert emulator.item(stuck["id"])["state"] == "LEASED", "the official agent waits on a Pending pod"
        stop_agent(emulator, agent, expect_exit=False)
    assert not [e for e in emulator.requests() if e["error"]], "every request was answered without error"
    operations_fixture.check("cluster", emulator.operations())


PREEMPTED_QUEUE_CONFIG = {
    "apiVersion": "kubeflow.org/v1",
    "kind": "PyTorchJob",
    "metadata": {"name": "ptj-${run_id}"},
    "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "Never", "template": {
        "spec": {"containers": [{"name": "pytorch", "image": "${image_uri}"}]},
    }}}},
}


def preempt_pod_of(kube: Any, ns: str, workload: dict[str, Any], labels: dict[str, str], reason: str) -> None:
    """Play the training operator and the scheduler: a pod of the workload that was preempted
    (phase Failed with a DisruptionTarget condition, as the kubelet leaves it)."""
    name = f"{workload['metadata']['name']}-master-0"
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": ns, "labels": labels,
        "ownerReferences": [{"apiVersion": workload["apiVersion"], "kind": workload["kind"],
                             "name": workload["metadata"]["name"], "uid": workload["metadata"]["uid"]}]},
        "spec": {"nodeName": "no-such-node", "restartPolicy": "Never",
                 "containers": [{"name": "pytorch", "image": "busybox:1.36"}]}})
    status = {"phase": "Failed", "reason": "Preempted", "conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": reason,
         "message": "the node was reclaimed", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    kube.kubectl("patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": status}))


@pytest.mark.cluster
def test_official_agent_requeues_a_preempted_run(
    emulator: EmulatorClient, tmp_path: Path, kube: Any, namespace: Any, operations_fixture: OperationsFixture
) -> None:
    """The official agent's preemption requeue, for real: a PyTorchJob whose pod is preempted goes
    back on its queue as the same run with `_resume_count` 1 (pushToRunQueueByName)."""
    ns = namespace("preempt")
    kube.apply(crds.PYTORCHJOB)
    emulator.create_queue(ENTITY, "preempt", {**PREEMPTED_QUEUE_CONFIG, "metadata": {
        **PREEMPTED_QUEUE_CONFIG["metadata"], "namespace": ns}})
    first = emulator.push(ENTITY, "preempt", run_spec("pre1", image="pytorch/pytorch:2.5"))
    with OfficialAgent(tmp_path, emulator.url, emulator.api_key, ENTITY, ["preempt"],
                       kubeconfig=Path(kube.kubeconfig)) as agent:
        (registered,) = wait_until(emulator.agents, 60, "the agent to register", agent)
        (cr,) = wait_until(lambda: kube.get("pytorchjobs.kubeflow.org", namespace=ns), 120, "the PyTorchJob", agent)
        preempt_pod_of(kube, ns, cr, {"wandb.ai/monitor": "true", "wandb.ai/agent": registered["name"]},
                       "PreemptionByScheduler")
        items = wait_until(lambda: len(emulator.items(ENTITY, "preempt")) == 2 and emulator.items(ENTITY, "preempt"),
                           120, "the requeued item", agent)
        stop_agent(emulator, agent, expect_exit=False)
    requeued = next(i for i in items if i["id"] != first["id"])
    assert requeued["run_spec"]["run_id"] == "pre1" and requeued["run_spec"]["_resume_count"] == 1
    (push,) = emulator.requests("pushToRunQueueByName")
    assert push["variables"]["queueName"] == "preempt" and push["variables"]["projectName"] == "model-registry"
    operations_fixture.check("preemption", emulator.operations())

    # The same input to our agent: its requeue must carry the same run spec.
    ours_ns = namespace("preempt-ours")
    emulator.create_queue(ENTITY, "preempt-ours", {**PREEMPTED_QUEUE_CONFIG, "metadata": {
        **PREEMPTED_QUEUE_CONFIG["metadata"], "namespace": ours_ns}})
    ours_first = emulator.push(ENTITY, "preempt-ours", run_spec("pre1", image="pytorch/pytorch:2.5"))
    with OurAgent(tmp_path / "ours", emulator, ["preempt-ours"], Path(kube.kubeconfig), ours_ns) as ours:
        (cr,) = wait_until(lambda: kube.get("pytorchjobs.kubeflow.org", namespace=ours_ns), 120, "our PyTorchJob")
        preempt_pod_of(kube, ours_ns, cr, {k: v for k, v in cr["metadata"]["labels"].items()
                                           if k in ("wandb.ai/agent", "app.kubernetes.io/managed-by")}
                       | {"wandb.ai/run-queue-item": cr["metadata"]["labels"]["wandb.ai/run-queue-item"]},
                       "PreemptionByScheduler")
        # Our agent requeues when the workload ends failed (its operator's verdict), not at the first pod event.
        kube.kubectl("patch", "pytorchjobs.kubeflow.org", cr["metadata"]["name"], "-n", ours_ns,
                     "--subresource=status", "--type=merge", "-p", json.dumps({"status": {"conditions": [
                         {"type": "Failed", "status": "True", "reason": "PodPreempted", "message": "master preempted"}]}}))
        mine = wait_until(lambda: len(emulator.items(ENTITY, "preempt-ours")) == 2 and emulator.items(
            ENTITY, "preempt-ours"), 120, "our requeued item", None)
        ours.check()
    our_requeued = next(i for i in mine if i["id"] != ours_first["id"])["run_spec"]

    def normal(spec: dict[str, Any], ns: str) -> str:
        return json.dumps(spec, sort_keys=True).replace(ns, "<ns>")

    assert normal(our_requeued, ours_ns) == normal(requeued["run_spec"], ns)
    assert emulator.item(ours_first["id"])["reports"] == [], "the preempted item is not failed"


class OurAgent:
    """`python -m agent` with the admin kubeconfig, for differential checks against the official one."""

    def __init__(self, workdir: Path, emulator: EmulatorClient, queues: list[str], kubeconfig: Path, ns: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = workdir / "launch-config.yaml"
        cfg.write_text(json.dumps({"entity": ENTITY, "queues": queues, "max_jobs": 2}))
        self.log_path = workdir / "agent.log"
        env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "WANDB_API_KEY": emulator.api_key,
               "WANDB_BASE_URL": emulator.url, "LAUNCH_AGENT_NAMESPACE": ns, "LAUNCH_AGENT_POLL_INTERVAL": "0.5"}
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "-c", str(cfg), "--kubeconfig", str(kubeconfig),
                                      "--health-port", "0"], env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def check(self) -> None:
        assert self.proc.poll() is None, self.log_path.read_text()[-3000:]

    def __enter__(self) -> OurAgent:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        self._log.close()


# --- sweeps ---------------------------------------------------------------------------------

SWEEP_PROJECT = "tune"
OFFICIAL_CLIENTS = ("W&B Public Client", "wandb-core")
# What the official client sends that a sweep scheduler of ours also sends, but that the runs
# above never trigger: the queue listing QueuedRun falls back to on servers without
# runQueue.runQueueItem(id), the StopRun a scheduler sends for a cancelled sweep's runs, and the
# push of a sweep whose launch section sets template variables.
OFFICIAL_CLIENT_CALLS = """
import sys
import wandb
from wandb.sdk.launch._launch_add import launch_add
from wandb.sdk.launch.api import LaunchApi
entity, project, queue, item = sys.argv[1:5]
wandb.Api().queued_run(entity, project, queue, item, "model-registry")._get_run_queue_item_legacy()
LaunchApi().stop_run(sys.argv[5])
launch_add(docker_image="busybox:1.36", project=project, entity=entity, queue_name=queue, template_variables={},
           priority=2)
"""


def official_operations(emulator: EmulatorClient) -> list[dict[str, Any]]:
    return [op for op in emulator.operations() if op["client"] in OFFICIAL_CLIENTS]


def test_official_agent_fails_the_default_scheduler_of_its_own_cli(
    emulator: EmulatorClient, tmp_path: Path, operations_fixture: OperationsFixture
) -> None:
    """wandb 0.31.0: `wandb launch-sweep` wraps the scheduler's arguments in Python quotes for a
    shell, and the agent's local-process runner quotes them once more, so the scheduler looks for
    project 'tune' with the quotes and exits; the agent then cancels the sweep. (Ours reads the
    arguments without the quotes; test_sweeps runs the same sweep to FINISHED.)"""
    emulator.create_queue(ENTITY, "sweeps", {"metadata": {"namespace": "default"}})
    sweep = launch_sweep(emulator, tmp_path / "cli", GRID, queue="sweeps", project=SWEEP_PROJECT, entity=ENTITY)
    with OfficialAgent(tmp_path, emulator.url, emulator.api_key, ENTITY, ["sweeps"]) as agent:
        wait_until(lambda: emulator.sweep(ENTITY, SWEEP_PROJECT, sweep)["state"] == "CANCELED", 120,
                   "the official agent to cancel the sweep", agent)
        assert f"Sweep {ENTITY}/'{SWEEP_PROJECT}'/{sweep} not found" in agent.log()
        stop_agent(emulator, agent)
    assert not emulator.sweep(ENTITY, SWEEP_PROJECT, sweep)["runs"], "no run was ever suggested"
    operations_fixture.check("sweep-cli", official_operations(emulator))


@pytest.mark.cluster
def test_official_scheduler_and_ours_push_the_same_runs(
    emulator: EmulatorClient, tmp_path: Path, kube: Any, namespace: Any, operations_fixture: OperationsFixture
) -> None:
    """`wandb launch-sweep` with a grid of 4 and a random sweep of 5: the official scheduler (run
    from its queue item, see sweep_site.OfficialScheduler) with the official agent launching the
    runs, then our agent on the same sweeps; both end FINISHED having pushed the same parameter
    sets (the emulator draws random sweeps from a fixed seed) in the same run specs."""
    emulator.settings(sweep_seed=7)
    ns = namespace("offsweep")
    emulator.create_queue(ENTITY, "osweeps", {"metadata": {"namespace": ns}, "spec": {"template": {
        "metadata": {"annotations": {RUN_SECONDS: "2"}}, "spec": {"containers": [{}]}}}})
    cli = tmp_path / "cli"
    official = {name: launch_sweep(emulator, cli, config, queue="osweeps", project=SWEEP_PROJECT, entity=ENTITY)
                for name, config in (("grid", GRID), ("random", RANDOM))}
    schedulers = []
    player = RunPlayer(kube, emulator, ns, ENTITY, SWEEP_PROJECT)
    player.start()
    try:
        for sweep in official.values():  # what the agent's runner does before it starts a scheduler
            popped = emulator.graphql(M_POP, {"entity": ENTITY, "project": "model-registry",
                                              "queueName": "osweeps", "launchAgentId": None})
            item = popped["data"]["popFromRunQueue"]
            assert item["runSpec"]["run_id"] == sweep
            emulator.graphql(M_ACK, {"itemId": item["runQueueItemId"], "runId": sweep})
            home = tmp_path / f"scheduler-{sweep}"
            home.mkdir()
            schedulers.append(OfficialScheduler(emulator, home, item["runQueueItemId"], "osweeps", item["runSpec"]))
        with OfficialAgent(tmp_path, emulator.url, emulator.api_key, ENTITY, ["osweeps"], max_jobs=8,
                           kubeconfig=Path(kube.kubeconfig)) as agent:
            wait_until(lambda: all(emulator.sweep(ENTITY, SWEEP_PROJECT, s)["state"] == "FINISHED"
                                   for s in official.values()), 300, "both official sweeps FINISHED", agent)
    finally:
        player.stop()
        for scheduler in schedulers:
            scheduler.stop()
    some = pushed_runs(emulator, ENTITY, "osweeps", official["grid"])[0]
    script = subprocess.run([sys.executable, "-c", OFFICIAL_CLIENT_CALLS, ENTITY, SWEEP_PROJECT, "osweeps",
                             scheduler_item_id(emulator, "osweeps", official["grid"]),
                             base64.b64encode(f"Run:v1:{some['run_id']}:{SWEEP_PROJECT}:{ENTITY}".encode()).decode()],
                            env=wandb_env(emulator, cli), capture_output=True, text=True, timeout=120)
    assert script.returncode == 0, script.stderr[-3000:]
    assert not [e for e in emulator.requests() if e["error"]], "every request was answered without error"
    operations_fixture.check("sweep", official_operations(emulator))

    (tmp_path / "ours").mkdir()
    site = install(kube, namespace, EntityAdmin(emulator.url, emulator.api_key, ENTITY), tmp_path / "ours")
    queue = job_queue(site, "sweeps")
    ours_player = RunPlayer(kube, emulator, site.jobs_ns, ENTITY, SWEEP_PROJECT)
    ours_player.start()
    try:
        ours_agent = site.agent([queue], config=f"entity: {ENTITY}\nqueues: [{queue}]\nmax_jobs: 8\n"
                                                "max_schedulers: 2\n", env=SWEEP_ENV)
        ours = {name: launch_sweep(emulator, cli, config, queue=queue, project=SWEEP_PROJECT, entity=ENTITY)
                for name, config in (("grid", GRID), ("random", RANDOM))}
        wait_until(lambda: all(emulator.sweep(ENTITY, SWEEP_PROJECT, s)["state"] == "FINISHED"
                               for s in ours.values()), 300, "both sweeps FINISHED through our agent")
        assert ours_agent.terminate() == 0
    finally:
        ours_player.stop()
        for proc in site.procs:
            proc.kill()

    def comparable(spec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in spec.items() if k not in ("run_id", "sweep_id", "resource_args")}

    for name in ("grid", "random"):
        theirs = pushed_runs(emulator, ENTITY, "osweeps", official[name])
        mine = pushed_runs(emulator, ENTITY, queue, ours[name])
        assert len(theirs) == len(mine) == (4 if name == "grid" else 5)
        assert parameter_sets(mine) == parameter_sets(theirs), name
        key = lambda s: json.dumps(comparable(s), sort_keys=True)  # noqa: E731
        assert sorted(map(key, mine)) == sorted(map(key, theirs)), name


def scheduler_item_id(emulator: EmulatorClient, queue: str, sweep: str) -> str:
    return next(i["id"] for i in emulator.items(ENTITY, queue) if i["run_spec"].get("run_id") == sweep
                and i["run_spec"].get("uri") == "placeholder-uri-scheduler")
