"""The agent as the chart runs it: its own image (built here from agent/Dockerfile) in the
chart's pod on the real node, in an ``enforce=restricted`` namespace — probes passing, non-root,
read-only root filesystem, the in-cluster ServiceAccount as its only credential. It pops runs
from the emulator and launches them; each run's container (the trainer image, the official
``wandb`` SDK) calls ``wandb.init`` against the emulator and exits 0 or 1, so the run state the
emulator holds comes from the run itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localenv import node as realnode
from localenv.pytest_plugin import Kube, NodeImages
from localenv.wandb_emulator import start_emulator
from localenv.wandb_emulator.testing import AdminCallError, EntityAdmin

pytestmark = pytest.mark.e2e

ENTITY = "acme"
PROJECT = "in-cluster"
CHART = Path(__file__).resolve().parents[2] / "charts" / "launch-agent"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


@pytest.fixture(scope="module")
def emu() -> Iterator[EntityAdmin]:
    server, key = start_emulator(entity=ENTITY, username=ENTITY)
    try:
        yield EntityAdmin(server.url, key, ENTITY)
    finally:
        server.stop()


def queue_config(namespace: str) -> dict[str, Any]:
    """A Job queue into *namespace* whose pods run on the real node (and pass the restricted standard)."""
    return {"namespace": namespace, "spec": {"template": {"spec": {
        **realnode.placement(),
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }}}}


@pytest.fixture(scope="module")
def installed(kube: Kube, real_node: realnode.RealNode, node_images: NodeImages, emu: EntityAdmin,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The chart installed with the locally built agent image, pointed at the emulator."""
    suffix = uuid.uuid4().hex[:6]
    agent_ns, jobs_ns, queue, release = f"agent-{suffix}", f"jobs-{suffix}", f"real-{suffix}", f"la-{suffix}"
    for ns in (agent_ns, jobs_ns):
        kube.create_namespace(ns, RESTRICTED)
    emu.queue(queue, queue_config(jobs_ns))
    image, tag = node_images.agent.rsplit(":", 1)
    values = {
        "agent": {"image": f"{image}:{tag}", "imagePullPolicy": "Never", "apiKey": emu.key,
                  "nodeSelector": realnode.placement()["nodeSelector"],
                  "tolerations": realnode.placement()["tolerations"],
                  "probes": {"initialDelaySeconds": 2, "periodSeconds": 3}},
        "baseUrl": real_node.pod_url(emu.url),
        "additionalTargetNamespaces": [jobs_ns],
        "launchConfig": yaml.safe_dump({"entity": ENTITY, "queues": [queue], "max_jobs": 4}),
        "helmTest": {"enabled": False},
    }
    path = tmp_path_factory.mktemp("chart") / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    kube.helm("install", release, str(CHART), "-n", agent_ns, "-f", str(path), "--wait", "--timeout", "240s")
    try:
        yield {"agent_ns": agent_ns, "jobs_ns": jobs_ns, "queue": queue, "release": release}
    finally:
        kube.helm("uninstall", release, "-n", agent_ns, "--wait", "--timeout", "120s", check=False)
        for ns in (agent_ns, jobs_ns):
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def agent_pod(kube: Kube, ns: str) -> dict[str, Any]:
    pods = kube.get("pods", namespace=ns, selector="app.kubernetes.io/name=launch-agent")
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def test_the_agent_pod_runs_from_its_image_under_the_restricted_standard(
        kube: Kube, real_node: realnode.RealNode, node_images: NodeImages, installed: dict[str, Any]) -> None:
    ns = installed["agent_ns"]
    assert kube.get("namespace", ns)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = agent_pod(kube, ns)
    assert pod["spec"]["nodeName"] == real_node.name
    container = pod["spec"]["containers"][0]
    assert container["image"] == node_images.agent
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] is True and "running" in status["state"]  # the readiness probe passed
    uid = kube.kubectl("exec", pod["metadata"]["name"], "-n", ns, "--", "python", "-c",
                       "import os; print(os.getuid())").stdout.strip()
    assert uid == "1000"
    denied = kube.kubectl("exec", pod["metadata"]["name"], "-n", ns, "--", "python", "-c",
                          "open('/app/x', 'w')", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr + denied.stdout
    # No kubeconfig anywhere in the pod: the agent talks to the API server in-cluster.
    env = kube.kubectl("exec", pod["metadata"]["name"], "-n", ns, "--", "env").stdout
    assert "KUBERNETES_SERVICE_HOST=10.96.0.1" in env and "KUBECONFIG" not in env


def test_the_agent_image_size_is_reported(request: pytest.FixtureRequest, node_images: NodeImages) -> None:
    """The image's layers as a registry would store them (compressed), base included."""
    from localenv import images
    from localenv.images import oci, project

    archive = project.agent(log=lambda _line: None)
    assert archive.ref == node_images.agent
    layers = oci.read_archive(archive.path).size
    base = images.python_base(log=lambda _line: None).size  # uncompressed
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    line = (f"agent image {archive.ref}: {layers / 1e6:.1f} MB of compressed layers "
            f"(on a {base / 1e6:.0f} MB uncompressed Debian base)")
    request.node.user_properties.append(("agent_image_bytes", layers))
    if reporter is not None:
        reporter.write_line(f"\n[image size] {line}")
    assert 0 < layers < 150e6, line  # the slim runtime set on a slim base; wandb[launch] alone is 906 MB


def _run_state(emu: EntityAdmin, run_id: str) -> str:
    try:
        return str(emu.run(ENTITY, PROJECT, run_id).get("state") or "")
    except AdminCallError:  # the run does not exist yet
        return ""


# The queue item of a run that reported its own end is FINISHED either way (as on W&B): the
# outcome is the run's state, which only the run's own wandb client set here.
@pytest.mark.parametrize(("exit_code", "run_state", "item_state"),
                         [(0, "finished", "FINISHED"), (1, "failed", "FINISHED")])
def test_a_launched_run_really_runs_and_reports_its_own_state(
        kube: Kube, node_images: NodeImages, emu: EntityAdmin, installed: dict[str, Any],
        exit_code: int, run_state: str, item_state: str) -> None:
    spec = {"entity": ENTITY, "project": PROJECT, "docker": {"docker_image": node_images.trainer},
            "overrides": {"args": ["--steps", "3", "--exit-code", str(exit_code)]}}
    item_id = emu.enqueue(installed["queue"], spec)
    item = emu.wait_for(lambda: (i := emu.item(item_id)) and i.get("associated_run_id") and i,
                        timeout=240, what="the agent to pop and ack the item")
    run_id = str(item["associated_run_id"])
    emu.wait_for(lambda: _run_state(emu, run_id) == run_state, timeout=300,
                 what=f"run {run_id} to be {run_state} (reported by wandb in the run's container)")
    jobs = kube.get("jobs.batch", namespace=installed["jobs_ns"], selector=f"wandb.ai/run-id={run_id}")
    assert len(jobs) == 1
    pods = kube.get("pods", namespace=installed["jobs_ns"], selector=f"job-name={jobs[0]['metadata']['name']}")
    assert pods and pods[0]["spec"]["nodeName"] == realnode.NODE_NAME
    log = kube.kubectl("logs", pods[0]["metadata"]["name"], "-n", installed["jobs_ns"]).stdout
    assert f"trainer: run {ENTITY}/{PROJECT}/{run_id} logged 3 steps, exiting {exit_code}" in log
    emu.wait_for(lambda: emu.item(item_id)["state"] == item_state, timeout=180,
                 what=f"the queue item to be {item_state}")
