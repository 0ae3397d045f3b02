"""The pipeline's pops and the stop checks, in-process: W&B is a stand-in that counts the calls in
flight (each answer comes after a short sleep); Kubernetes is never reached (launches are held as
items in flight, so they keep their `max_jobs` slot). Counts only, never a timing."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import httpx2

from agent.backend.operations import Backend, PoppedItem
from agent.backend.transport import GraphQLClient
from agent.config import AgentSettings
from agent.controller import stops
from agent.controller.agent import Agent
from agent.controller.pipeline import Launch
from agent.kube.client import JOBS, Kube
from agent.manifest import ANN_ENTITY, ANN_ITEM_ID, ANN_PROJECT, ANN_RUN_ID, LABEL_ROLE
from agent.metrics import Metrics


class Gauge:
    """Calls in flight now, the most at once, and how many were made (per key)."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.calls: dict[str, int] = {}

    async def around(self, key: str) -> None:
        self.calls[key] = self.calls.get(key, 0) + 1
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.005)
        finally:
            self.now -= 1


def make_agent(queues: dict[str, int], *, max_jobs: int, pop_width: int = 4) -> tuple[Agent, Gauge, list[str]]:
    s = dataclasses.replace(AgentSettings(entity="e", queues=tuple(queues), api_key="local-" + "x" * 40,
                                          max_jobs=max_jobs), pop_width=pop_width, poll_interval=3600.0)
    agent = Agent(s, Backend(GraphQLClient("http://127.0.0.1:9", s.api_key), "e"),
                  Kube(httpx2.AsyncClient(base_url="http://127.0.0.1:9")), Metrics(), logging.getLogger("t"))
    agent.agent_id = "agent-1"
    agent.resync.done_once.set()
    left = dict(queues)
    gauge = Gauge()
    started: list[str] = []

    async def pop(queue: str, agent_id: str) -> PoppedItem | None:
        await gauge.around(queue)
        if left[queue] <= 0:
            return None
        left[queue] -= 1
        return PoppedItem(item_id=f"{queue}-{queues[queue] - left[queue]}", run_spec={"x": 1}, queue=queue)

    def start(item: PoppedItem, record: dict[str, Any] | None = None) -> None:
        started.append(item.item_id)
        agent.pipeline.in_flight[item.item_id] = Launch(item)  # holds its slot, as a launch does

    agent.backend.pop = pop  # type: ignore[method-assign]
    agent.pipeline.start = start  # type: ignore[method-assign]
    return agent, gauge, started


def test_pops_run_side_by_side_within_the_width_and_never_past_max_jobs():
    agent, gauge, started = make_agent({"q0": 50, "q1": 50}, max_jobs=20, pop_width=4)
    all_empty = asyncio.run(agent.pipeline._pop_burst())
    assert not all_empty  # it stopped because no slot was left
    assert len(started) == 20 and len(set(started)) == 20
    assert 1 < gauge.most <= 4
    assert sum(gauge.calls.values()) == 20  # each pop held a slot: none was made without one
    assert {i.split("-")[0] for i in started} == {"q0", "q1"}  # round robin
    assert agent.pipeline.pops == 0


def test_an_idle_poll_costs_one_pop_per_queue():
    agent, gauge, started = make_agent({"q0": 0, "q1": 0, "q2": 0}, max_jobs=5)
    assert asyncio.run(agent.pipeline._pop_burst())
    assert gauge.calls == {"q0": 1, "q1": 1, "q2": 1} and not started


def test_a_queue_that_answered_empty_is_left_until_the_next_poll():
    agent, gauge, started = make_agent({"q0": 0, "q1": 12}, max_jobs=100, pop_width=8)
    assert asyncio.run(agent.pipeline._pop_burst())
    assert gauge.calls["q0"] == 1
    assert sorted(started) == sorted(f"q1-{i}" for i in range(1, 13))
    assert gauge.most <= 8


def test_one_at_a_time_with_width_one():
    agent, gauge, started = make_agent({"q0": 6}, max_jobs=10, pop_width=1)
    assert asyncio.run(agent.pipeline._pop_burst())
    assert gauge.most == 1 and len(started) == 6


def test_the_poll_loop_waits_the_poll_interval_when_every_queue_is_empty():
    """The loop sleeps after an empty round (it used to raise on its own wait and be restarted)."""
    agent, gauge, _ = make_agent({"q0": 0, "q1": 0}, max_jobs=5)

    async def scenario() -> None:
        task = asyncio.create_task(agent.pipeline.poll_loop())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if sum(gauge.calls.values()) >= 2 or task.done():
                break
        for _ in range(20):  # room for a second round, if the loop did not wait
            await asyncio.sleep(0.01)
        assert not task.done(), task.exception()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert gauge.calls == {"q0": 1, "q1": 1}


def test_stop_checks_are_bounded():
    agent, _, _ = make_agent({"q0": 0}, max_jobs=100)
    n = 3 * stops.STOP_CHECK_CONCURRENCY + 1
    for i in range(n):
        agent.monitor.objects[(JOBS.key, "ns", f"w{i}")] = {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"w{i}", "namespace": "ns", "labels": {LABEL_ROLE: "workload"},
                         "annotations": {ANN_ITEM_ID: f"i{i}", ANN_ENTITY: "e", ANN_PROJECT: "p", ANN_RUN_ID: f"r{i}"}}}
    gauge = Gauge()

    async def run_stopped(entity: str, project: str, run_id: str) -> bool:
        await gauge.around(run_id)
        return False

    agent.backend.run_stopped = run_stopped  # type: ignore[method-assign]

    async def scenario() -> None:
        task = asyncio.create_task(stops.StopChecks(agent, interval=3600.0).loop())
        for _ in range(500):
            await asyncio.sleep(0.01)
            if len(gauge.calls) >= n:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert len(gauge.calls) == n  # every running workload was asked for
    assert gauge.most <= stops.STOP_CHECK_CONCURRENCY
