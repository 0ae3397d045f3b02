"""The official agent (wandb 0.31.0, unmodified) launching onto the real node: each run's
container is the trainer image, whose own ``wandb.init`` / ``finish(exit_code)`` against the
emulator sets the run's state — no emulator shortcut stands in for the run. The same outcomes
as our agent's (tests/e2e/test_agent_in_cluster.py): exit 0 is a finished run, exit 1 a failed
one, and the queue item is FINISHED once its run has ended."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from official_agent import OfficialAgent

from localenv import node as realnode
from localenv.pytest_plugin import Kube, NodeImages
from localenv.wandb_emulator import start_emulator
from localenv.wandb_emulator.testing import AdminCallError, EntityAdmin

pytestmark = pytest.mark.e2e

ENTITY = "acme"
PROJECT = "official-real"


@pytest.fixture(scope="module")
def emu() -> Iterator[EntityAdmin]:
    server, key = start_emulator(entity=ENTITY, username=ENTITY)
    try:
        yield EntityAdmin(server.url, key, ENTITY)
    finally:
        server.stop()


def run_state(emu: EntityAdmin, run_id: str) -> str:
    try:
        return str(emu.run(ENTITY, PROJECT, run_id).get("state") or "")
    except AdminCallError:
        return ""


def test_official_agent_runs_report_their_own_state(kube: Kube, real_node: realnode.RealNode,
                                                    node_images: NodeImages, emu: EntityAdmin, namespace,
                                                    tmp_path: Path) -> None:
    ns = namespace("official-real")
    emu.queue("real", {"metadata": {"namespace": ns}, "spec": {"template": {"spec": realnode.placement()}}})
    runs: dict[str, int] = {"okreal1": 0, "badreal1": 1}
    items = {}
    for run_id, code in runs.items():
        spec: dict[str, Any] = {"entity": ENTITY, "project": PROJECT, "run_id": run_id,
                                "docker": {"docker_image": node_images.trainer},
                                "overrides": {"args": ["--steps", "2", "--exit-code", str(code)]}}
        items[run_id] = emu.enqueue("real", spec)
    # The agent and its runs use the emulator's address on the node's gateway: the official
    # agent hands its own WANDB_BASE_URL to the runs it launches.
    base_url = real_node.pod_url(emu.url)
    with OfficialAgent(tmp_path, base_url, emu.key, ENTITY, ["real"], max_jobs=2,
                       kubeconfig=Path(kube.kubeconfig)) as agent:
        for run_id, code in runs.items():
            want = "finished" if code == 0 else "failed"
            deadline = time.monotonic() + 300
            while run_state(emu, run_id) != want:
                assert agent.alive(), agent.log()[-3000:]
                assert time.monotonic() < deadline, f"{run_id} is {run_state(emu, run_id)!r}, not {want}"
                time.sleep(1)
            (job,) = kube.get("jobs.batch", namespace=ns, selector=f"wandb.ai/run-id={run_id}")
            pods = kube.get("pods", namespace=ns, selector=f"job-name={job['metadata']['name']}")
            assert pods and pods[0]["spec"]["nodeName"] == realnode.NODE_NAME
            log = kube.kubectl("logs", pods[0]["metadata"]["name"], "-n", ns).stdout
            assert f"trainer: run {ENTITY}/{PROJECT}/{run_id} logged 2 steps, exiting {code}" in log
            assert emu.item(items[run_id])["state"] == "FINISHED"
    assert len(emu.requests("file_stream")) >= len(runs)  # the runs' own wandb streamed their ends
