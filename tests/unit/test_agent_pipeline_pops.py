"""The pipeline's pops and the stop checks, in-process: W&B is a stand-in that counts the calls in
flight (each answer comes after a short sleep); Kubernetes is never reached (launches are held as
items in flight, so they keep their `max_jobs` slot). Counts only, never a timing."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import httpx2

from agent.backend.operations import STOPPED_BATCH, Backend, PoppedItem
from agent.backend.transport import GraphQLClient
from agent.config import AgentSettings
from agent.controller import ledger, stops
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


def test_a_queue_empty_early_in_a_burst_is_asked_again_before_the_poll_interval():
    """q0 gets its items only after q1's first pop (a push still under way when the burst began):
    the poll loop asks every queue again once a burst gave items, so q0's items do not wait a whole
    poll interval (an hour here); then a round finds every queue empty and the loop sleeps."""
    agent, gauge, started = make_agent({"q0": 0, "q1": 6}, max_jobs=100, pop_width=4)
    pop = agent.backend.pop
    left = {"q0": 5}

    async def late_pop(queue: str, agent_id: str) -> PoppedItem | None:
        if queue == "q0" and gauge.calls.get("q1", 0) and left["q0"]:
            left["q0"] -= 1
            n = left["q0"]
            await gauge.around(queue)
            return PoppedItem(item_id=f"late-{n}", run_spec={"x": 1}, queue=queue)
        return await pop(queue, agent_id)

    agent.backend.pop = late_pop  # type: ignore[method-assign]

    async def scenario() -> None:
        task = asyncio.create_task(agent.pipeline.poll_loop())
        for _ in range(300):
            await asyncio.sleep(0.01)
            if len(started) >= 11:
                break
        for _ in range(20):  # room for more rounds, if the loop did not sleep
            await asyncio.sleep(0.01)
        assert not task.done(), task.exception()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert sorted(started) == sorted([f"late-{i}" for i in range(5)] + [f"q1-{i}" for i in range(1, 7)])
    rounds = gauge.calls["q0"]
    assert rounds <= 8, gauge.calls  # 5 items and a few empty answers, then asleep


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


def test_stop_checks_are_batched_and_bounded():
    """Every running workload's run is asked for once per round, STOPPED_BATCH runs per request,
    at most STOP_CHECK_CONCURRENCY requests at once; a stopped run is recorded."""
    agent, _, _ = make_agent({"q0": 0}, max_jobs=10_000)
    n = 2 * STOPPED_BATCH * stops.STOP_CHECK_CONCURRENCY + 1
    for i in range(n):
        agent.monitor.objects[(JOBS.key, "ns", f"w{i}")] = {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"w{i}", "namespace": "ns", "labels": {LABEL_ROLE: "workload"},
                         "annotations": {ANN_ITEM_ID: f"i{i}", ANN_ENTITY: "e", ANN_PROJECT: "p", ANN_RUN_ID: f"r{i}"}}}
    gauge = Gauge()
    asked: list[str] = []
    sizes: list[int] = []
    stopped: list[str] = []

    async def runs_stopped(runs: list[tuple[str, str, str]]) -> list[bool | None]:
        sizes.append(len(runs))
        asked.extend(r for _, _, r in runs)
        await gauge.around("batch")
        return [r == "r7" for _, _, r in runs]

    async def record_stop(key: Any, obj: dict[str, Any]) -> None:
        stopped.append(obj["metadata"]["name"])

    agent.backend.runs_stopped = runs_stopped  # type: ignore[method-assign]
    checks = stops.StopChecks(agent, interval=3600.0)
    checks._stopped = record_stop  # type: ignore[method-assign]

    async def scenario() -> None:
        task = asyncio.create_task(checks.loop())
        for _ in range(500):
            await asyncio.sleep(0.01)
            if len(asked) >= n and gauge.now == 0:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert sorted(asked) == sorted(f"r{i}" for i in range(n))  # every run once
    assert max(sizes) == STOPPED_BATCH and len(sizes) == -(-n // STOPPED_BATCH)
    assert gauge.most <= stops.STOP_CHECK_CONCURRENCY
    assert stopped == ["w7"]


def test_the_loops_do_not_spin_while_the_agent_shuts_down():
    """Once shutdown began every wait returns at once; the sweeps loop must still sleep (it used to
    go round thousands of times a second for the whole shutdown grace) and the poll loop ends: the
    shutdown waits for it (a pop in flight may finish), and an idle agent used to wait 5 s there."""
    agent, _, _ = make_agent({"q0": 0}, max_jobs=5)
    beats: dict[str, int] = {}
    agent.heartbeats.beat = lambda name: beats.__setitem__(name, beats.get(name, 0) + 1)  # type: ignore[method-assign]
    agent.sweeps.adopt = lambda: asyncio.sleep(0)  # type: ignore[method-assign]

    async def scenario() -> None:
        agent.stopping.set()
        poll, sweeps = asyncio.create_task(agent.pipeline.poll_loop()), asyncio.create_task(agent._sweeps_loop())
        await asyncio.sleep(0.3)
        assert poll.done() and poll.exception() is None
        assert not sweeps.done(), sweeps.exception()
        sweeps.cancel()
        await asyncio.gather(sweeps, return_exceptions=True)

    asyncio.run(scenario())
    assert beats.get("poll", 0) <= 2 and beats.get("sweeps", 0) <= 2, beats


def test_the_slots_held_by_workloads_are_counted_once_per_change_not_once_per_pop():
    """Before every pop the poll loop asks how many slots are free; that walked every workload each
    time (a burst of 200 pops over hundreds of workloads: 12% of the agent's CPU). The count is
    derived from the watch's view again only when the view changed."""
    agent, _, started = make_agent({"q0": 100}, max_jobs=1000, pop_width=8)
    for i in range(300):
        agent.monitor._apply(JOBS, "ns", "ADDED", {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"w{i}", "namespace": "ns", "resourceVersion": "1", "labels": {LABEL_ROLE: "workload"},
                         "annotations": {ANN_ITEM_ID: f"w{i}"}}})
    walks = 0
    walk = agent.active_workloads

    def counting() -> list[Any]:
        nonlocal walks
        walks += 1
        return walk()

    agent.active_workloads = counting  # type: ignore[method-assign]
    asyncio.run(agent.pipeline._pop_burst())
    assert len(started) == 100 and walks == 1
    assert agent.free_slots() == 1000 - 300 - 100
    agent.monitor._apply(JOBS, "ns", "MODIFIED", {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "w0", "namespace": "ns", "resourceVersion": "2", "labels": {LABEL_ROLE: "workload"},
                     "annotations": {ANN_ITEM_ID: "w0", ledger.REPORTED: "finished"}}})
    assert agent.free_slots() == 1000 - 299 - 100 and walks == 2
