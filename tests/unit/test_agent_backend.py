"""The agent's GraphQL client and loop against the W&B emulator, in-process (no Kubernetes needed
for these paths: refused items are failed before anything is created)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from agent.backend.operations import STOPPED_BATCH, Backend
from agent.backend.transport import BackendError, GraphQLClient
from agent.config import AgentSettings
from agent.controller.agent import Agent, FatalError, derived_run_id
from agent.kube.client import Kube
from agent.metrics import Metrics
from localenv.wandb_emulator import start_emulator
from localenv.wandb_emulator.testing import EntityAdmin as Emu

ENTITY = "acme"


@pytest.fixture
def emu() -> Iterator[Emu]:
    server, key = start_emulator(entity=ENTITY, username=ENTITY)
    try:
        yield Emu(server.url, key, ENTITY)
    finally:
        server.stop()


def settings(emu: Emu, **kw: Any) -> AgentSettings:
    base = {"entity": ENTITY, "queues": ("q",), "api_key": emu.key, "base_url": emu.url, "namespace": "wandb",
            "poll_interval": 0.05, "agent_config": {"queues": ["q"]}, "version": "test"}
    base.update(kw)
    return AgentSettings(**base)


class NoClusterAgent(Agent):
    """These tests have no cluster: nothing to watch or adopt (that is covered end to end)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)

        async def no_cluster(*, relist: bool) -> None:
            return None

        self.resync.once = no_cluster  # type: ignore[method-assign]


def make_agent(emu: Emu, **kw: Any) -> tuple[Agent, GraphQLClient]:
    s = settings(emu, **kw)
    client = GraphQLClient(s.base_url, s.api_key, timeout=2, mutation_timeout=2, attempts=3, backoff=(0.01, 0.05))
    # Kubernetes is never reached on these paths; an address nothing listens on makes sure of that.
    kube = Kube(httpx2.AsyncClient(base_url="http://127.0.0.1:9"), "wandb")
    return NoClusterAgent(s, Backend(client, s.entity), kube, Metrics(), logging.getLogger("test-agent")), client


SPEC = {"entity": ENTITY, "project": "proj", "docker": {"docker_image": "busybox:1.36"},
        "resource": "kubernetes"}


def test_operations_round_trip(emu):
    emu.queue("q")
    item_id = emu.enqueue("q", {**SPEC, "run_id": "run1"})

    async def scenario() -> None:
        agent, client = make_agent(emu)
        try:
            await agent.register()
            assert agent.agent_id and agent.agent_name
            backend = agent.backend
            assert await backend.update_launch_agent(agent.agent_id, "POLLING")
            item = await backend.pop("q", agent.agent_id)
            assert item is not None and item.item_id == item_id and item.run_spec["run_id"] == "run1"
            assert await backend.pop("q", agent.agent_id) is None
            assert await backend.ack(item.item_id, "run1")
            assert await backend.warn(item.item_id, "pod p is Unschedulable")
            assert await backend.run_stopped(ENTITY, "proj", "run1") is False
            emu.admin("POST", f"/runs/{ENTITY}/proj/run1", {"state": "running", "stopped": True})
            assert await backend.run_stopped(ENTITY, "proj", "run1") is True
            # Batched: one answer per run, in order, over more than one request; unknown runs are not stopped.
            runs = [(ENTITY, "proj", "run1" if i % 7 == 3 else f"other{i}") for i in range(STOPPED_BATCH + 5)]
            assert await backend.runs_stopped(runs) == [r[2] == "run1" for r in runs]
            assert await backend.run_state(ENTITY, "proj", "run1") == "running"
            state = await backend.item_state("q", item.item_id)
            assert state is not None and (state.state, state.run_id) == ("LEASED", "run1")
            assert await backend.fail(item.item_id, "boom", "run")
            assert not await backend.fail(item.item_id, "again", "run")  # W&B records it, answers false
            assert (await backend.launch_agent(agent.agent_id))["stopPolling"] is False
            pushed = await backend.push("q", {**SPEC, "run_id": "run1", "_resume_count": 1})
            again = await backend.pop("q", agent.agent_id)
            assert again is not None and again.item_id == pushed and again.run_spec["_resume_count"] == 1
            assert await backend.item_state("q", "UnVuUXVldWVJdGVtOjk5OQ==") is None
        finally:
            await client.aclose()

    asyncio.run(scenario())
    got = emu.item(item_id)
    assert got["state"] == "FAILED" and got["error"]["message"] == "boom"
    assert [(r["message"], r["accepted"]) for r in got["reports"]] == [("boom", True), ("again", False)]
    assert [a["accepted"] for a in got["acks"]] == [True]
    assert got["warnings"][0]["message"] == "pod p is Unschedulable"


def test_entity_defaults_to_the_api_keys(emu):
    emu.queue("q")

    async def scenario() -> None:
        agent, client = make_agent(emu, entity="")
        try:
            await agent.register()
            assert agent.s.entity == ENTITY and agent.backend.entity == ENTITY
            assert agent.s.manifest_settings().queue_entity == ENTITY
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_missing_queue_is_fatal(emu):
    emu.queue("q")

    async def scenario() -> None:
        agent, client = make_agent(emu, queues=("q", "nope"))
        try:
            with pytest.raises(FatalError, match="nope"):
                await agent.register()
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_queries_are_retried_and_mutations_only_when_they_cannot_have_been_applied(emu):
    emu.queue("q")

    async def scenario() -> None:
        agent, client = make_agent(emu)
        try:
            await agent.register()
            agent_id = agent.agent_id
            emu.clear_requests()
            # A query is safe to send again after anything retryable.
            for kind, extra in (("status", {"status": 500}), ("drop", {}), ("lose_response", {})):
                emu.admin("POST", "/faults", {"operation": "LaunchAgent", "kind": kind, "times": 1, **extra})
                assert (await agent.backend.launch_agent(agent_id))["id"] == agent_id
            # 503 and 429 come before any work is done: a mutation is retried after them.
            emu.admin("POST", "/faults", {"operation": "popFromRunQueue", "kind": "status", "status": 503,
                                          "times": 2})
            assert await agent.backend.pop("q", agent_id) is None  # third attempt succeeds
            # A dropped connection, a lost answer or a 500 may hide an applied pop: never sent twice.
            for kind, extra in (("drop", {}), ("lose_response", {}), ("status", {"status": 500})):
                emu.admin("POST", "/faults", {"operation": "popFromRunQueue", "kind": kind, "times": 1, **extra})
                with pytest.raises(BackendError) as err:
                    await agent.backend.pop("q", agent_id)
                assert err.value.ambiguous
            emu.admin("POST", "/faults", {"operation": "popFromRunQueue", "kind": "status", "status": 400,
                                          "times": 1})
            with pytest.raises(BackendError) as err:
                await agent.backend.pop("q", agent_id)
            assert err.value.status == 400 and not err.value.retryable and not err.value.ambiguous
            emu.admin("POST", "/faults", {"operation": "popFromRunQueue", "kind": "graphql_error",
                                          "message": "nope", "times": 1})
            with pytest.raises(BackendError, match="nope"):
                await agent.backend.pop("q", agent_id)
        finally:
            await client.aclose()

    asyncio.run(scenario())
    counts = emu.admin("GET", "/counts")
    assert counts["LaunchAgent"] == 3 * 2
    assert counts["popFromRunQueue"] == 3 + 3 + 1 + 1


def test_a_slow_answer_is_waited_for_not_sent_again(emu):
    """A mutation that takes longer than the query timeout is awaited: applied once."""
    emu.queue("q")
    item_id = emu.enqueue("q", {**SPEC, "run_id": "slow"})

    async def scenario() -> None:
        s = settings(emu)
        client = GraphQLClient(s.base_url, s.api_key, timeout=0.5, mutation_timeout=10, attempts=3,
                               backoff=(0.01, 0.05))
        backend = Backend(client, ENTITY)
        try:
            agent_id = await backend.create_launch_agent([q["id"] for q in await backend.run_queues()], "h", {}, "v")
            emu.admin("POST", "/faults", {"operation": "popFromRunQueue", "kind": "latency", "seconds": 1.5})
            item = await backend.pop("q", agent_id)
            assert item is not None and item.item_id == item_id
        finally:
            await client.aclose()

    asyncio.run(scenario())
    assert emu.admin("GET", "/counts")["popFromRunQueue"] == 1
    assert emu.item(item_id)["claim_count"] == 1


def run_agent_until(emu: Emu, done, limit: float = 60.0, **kw: Any) -> Agent:
    """Run the real loop until `done()` (or a generous limit, then the caller's assertions fail)."""
    holder: list[Agent] = []

    async def scenario() -> None:
        agent, client = make_agent(emu, **kw)
        holder.append(agent)
        try:
            await body(agent)
        finally:
            await agent.monitor.aclose()
            await client.aclose()

    async def body(agent: Agent) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not done() and loop.time() < deadline and not task.done():
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(scenario())
    return holder[0]


def test_refused_items_are_failed_with_an_actionable_message(emu):
    emu.queue("q", {"metadata": {"namespace": "ml-prod"}})
    foreign = emu.enqueue("q", SPEC)
    emu.queue("q2", {"spec": {"template": {"spec": {"hostNetwork": True, "containers": [{}]}}}})
    hostnet = emu.enqueue("q2", SPEC)
    wrong_resource = emu.enqueue("q2", {**SPEC, "resource": "sagemaker"})

    def done() -> bool:
        return all(emu.item(i)["state"] == "FAILED" for i in (foreign, hostnet, wrong_resource))

    agent = run_agent_until(emu, done, queues=("q", "q2"), agent_config={"queues": ["q", "q2"]})
    assert done()
    assert emu.item(foreign)["error"]["message"].startswith("namespace ml-prod is not a target of this agent")
    assert "hostNetwork" in emu.item(hostnet)["error"]["message"]
    assert "pod-security-baseline" in emu.item(hostnet)["error"]["message"]
    assert "sagemaker" in emu.item(wrong_resource)["error"]["message"]
    assert agent.metrics.value("items_failed_total", queue="q", stage="agent") == 1


def test_a_failing_backend_never_kills_the_loop(emu):
    emu.queue("q", {"metadata": {"namespace": "elsewhere"}})
    emu.admin("POST", "/faults", {"operation": "LaunchAgent", "kind": "status", "status": 500, "times": 4})
    emu.admin("POST", "/faults", {"operation": "popFromRunQueue", "kind": "status", "status": 502, "times": 6})
    emu.admin("POST", "/faults", {"operation": "updateLaunchAgent", "kind": "drop", "times": 3})
    item_id = emu.enqueue("q", SPEC)
    run_agent_until(emu, lambda: emu.item(item_id)["state"] == "FAILED")
    assert emu.item(item_id)["state"] == "FAILED"


def test_stop_polling_ends_the_loop(emu):
    emu.queue("q")

    async def scenario() -> None:
        agent, client = make_agent(emu)
        try:
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            while not agent.agent_id:
                await asyncio.sleep(0.02)
            emu.admin("POST", f"/agents/{agent.agent_id}/stop-polling", {"stop": True})
            await asyncio.wait_for(task, 30)  # returns by itself; stop is never set
            assert not stop.is_set()
        finally:
            await client.aclose()

    asyncio.run(scenario())
    agents = emu.admin("GET", "/agents")
    assert agents[0]["status"] == "KILLED"


def test_derived_run_id_is_stable():
    assert derived_run_id("I1") == derived_run_id("I1") != derived_run_id("I2")
    assert len(derived_run_id("I1")) == 8 and derived_run_id("I1").isalnum()


def test_cli_with_a_rejected_api_key_exits_2(emu, tmp_path):
    import subprocess
    import sys

    emu.queue("q")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n")
    wrong = "local-" + "w" * 40
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "-e", ENTITY, "-q", "q", "--kubeconfig", str(kubeconfig),
         "--health-port", "0"], capture_output=True, text=True, timeout=120,
        env={"WANDB_API_KEY": wrong, "WANDB_BASE_URL": emu.url, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert "rejected the API key" in proc.stderr and "Traceback" not in proc.stderr
    assert wrong not in proc.stderr


class _RefusesBatches(GraphQLClient):
    """W&B refusing any RunStoppedStatus of more than one run (as it would for one unreadable
    project in the batch), and answering single ones with an error for run `bad`."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", "local-" + "x" * 40)
        self.sizes: list[int] = []

    async def execute(self, operation: str, query: str, variables: dict[str, Any], *,
                      mutation: bool = False) -> dict[str, Any]:
        runs = [v for k, v in variables.items() if k.startswith("runId")]
        self.sizes.append(len(runs))
        if len(runs) > 1 or runs == ["bad"]:
            raise BackendError("W&B API error: permission denied", status=200)
        return {"project": {"run": {"stopped": runs == ["stop-me"]}}}


def test_a_refused_stop_batch_is_asked_run_by_run():
    client = _RefusesBatches()
    backend = Backend(client, ENTITY)
    runs = [(ENTITY, "p", r) for r in ("a", "bad", "stop-me", "b")]
    assert asyncio.run(backend.runs_stopped(runs)) == [False, None, True, False]
    assert client.sizes == [4, 1, 1, 1, 1]
