"""agent.controller.reconcile: one pass over the watch's view, with the agent's collaborators
replaced by plain objects (no cluster, no W&B)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

from agent.controller import ledger
from agent.controller.reconcile import EVENTS_CHECK_INTERVAL, Reconciler
from agent.kube.client import EVENTS, JOBS, PODS
from agent.kube.watch import Monitor
from agent.manifest import ANN_ITEM_ID, ANN_QUEUE, ANN_RUN_ID, LABEL_ITEM, LABEL_ROLE
from agent.metrics import Metrics


class Kube:
    def __init__(self, events: list[dict[str, Any]] | None = None) -> None:
        self.lists: list[tuple[str, str]] = []
        self.events = events or []

    async def list(self, rt, namespace, label_selector=None, field_selector=None) -> tuple[list, str]:
        self.lists.append((rt.key, namespace))
        return [e for e in self.events if e["metadata"]["namespace"] == namespace], "1"


def starting_job(item: str, namespace: str = "jobs") -> dict[str, Any]:
    """An acked Job the job controller has not made a pod for (yet)."""
    return {"apiVersion": "batch/v1", "kind": "Job", "status": {},
            "metadata": {"name": f"run-{item}", "namespace": namespace, "finalizers": [ledger.FINALIZER],
                         "creationTimestamp": "2026-12-02T00:00:00Z",
                         "labels": {LABEL_ROLE: "workload", LABEL_ITEM: item},
                         "annotations": {ANN_ITEM_ID: item, ANN_QUEUE: "q", ANN_RUN_ID: "r", ledger.ACKED: "true"}}}


def agent_with(objects: dict[tuple[str, str, str], dict[str, Any]], kube: Kube) -> SimpleNamespace:
    monitor = SimpleNamespace(objects=objects, gone=set(), disruptions={}, pods={},
                              refused=lambda *_: None, update=lambda *_: None)
    return SimpleNamespace(kinds={JOBS.key: JOBS}, monitor=monitor, pipeline=SimpleNamespace(in_flight=set()),
                           launched_here=set(), metrics=Metrics(), log=logging.getLogger("test"),
                           s=SimpleNamespace(start_timeout=0, stopped_run_timeout=60), kube=kube,
                           wake=lambda: None)


def test_a_new_workloads_events_are_first_listed_after_a_while_not_on_every_wake():
    """A burst of new Jobs whose pods are not there yet would list events once per Job on the
    first pass, before the job controller had a chance to make the pods; after that, one list of a
    namespace's Warning events serves all its waiting Jobs (it used to be one list per Job)."""
    quota = {"metadata": {"namespace": "jobs"}, "type": "Warning", "reason": "FailedCreate",
             "message": "exceeded quota", "involvedObject": {"kind": "Job", "name": "run-3"}}
    kube = Kube([quota])
    jobs = {(JOBS.key, ns, f"run-{p}{i}"): starting_job(f"{p}{i}", ns) for i in range(5)
            for ns, p in (("jobs", ""), ("other", "o"))}
    rec = Reconciler(agent_with(jobs, kube))  # type: ignore[arg-type]

    async def passes() -> None:
        for _ in range(3):
            rec.pass_once()
            await asyncio.gather(*rec._tasks)
        assert kube.lists == [], "events listed before their pods had a chance to appear"
        for memo in rec.memos.values():
            memo.events_checked_at -= EVENTS_CHECK_INTERVAL
        rec.pass_once()
        await asyncio.gather(*rec._tasks)

    asyncio.run(passes())
    assert sorted(kube.lists) == [(EVENTS.key, "jobs"), (EVENTS.key, "other")]
    assert rec.events.texts("jobs", "Job", "run-3") == ["Job run-3: FailedCreate: exceeded quota"]
    assert rec.events.texts("other", "Job", "run-o3") == [] and rec.events.texts("jobs", "Job", "run-1") == []


def running_job(i: int, rv: int = 1) -> dict[str, Any]:
    job = starting_job(f"i{i}")
    job["metadata"]["resourceVersion"] = str(rv)
    job["status"] = {"active": 1, "ready": 1}
    return job


def running_pod(i: int) -> dict[str, Any]:
    return {"metadata": {"name": f"run-i{i}-pod", "namespace": "jobs", "labels": {LABEL_ITEM: f"i{i}"}},
            "status": {"phase": "Running"}}


def test_a_watch_event_costs_a_look_at_its_workload_not_at_all_of_them():
    """With hundreds of runs in flight every watch event used to make the next pass look at every
    workload (quadratic in a burst, a pass each second in the steady state). Now a pass looks at
    what changed: the workload of the event, the workload of a changed pod, a workload whose action
    just ended; all of them only every FULL_PASS_INTERVAL."""
    monitor = Monitor(None, "sel", log=logging.getLogger("test"))  # type: ignore[arg-type]
    for i in range(200):
        monitor._apply(JOBS, "jobs", "ADDED", running_job(i))
        monitor._apply(PODS, "jobs", "ADDED", running_pod(i))
    class Patching(Kube):
        async def patch(self, rt: Any, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
            obj = monitor.objects[(rt.key, namespace, name)]
            meta = {**obj["metadata"], "annotations": {**obj["metadata"]["annotations"],
                                                       **body["metadata"]["annotations"]}}
            if "finalizers" in body["metadata"]:
                meta["finalizers"] = body["metadata"]["finalizers"]
            return {**obj, "metadata": meta}

    agent = agent_with({}, Patching())
    agent.monitor = monitor
    agent.heartbeats = SimpleNamespace(beat=lambda *_: None)

    async def wait_change(timeout: float) -> None:
        await asyncio.sleep(0.005)

    agent.wait_change = wait_change
    rec = Reconciler(agent)  # type: ignore[arg-type]
    looked: list[str] = []
    decide = rec._decide

    def counting(rt: Any, obj: dict[str, Any], memo: Any, now: float) -> Any:
        looked.append(obj["metadata"]["name"])
        return decide(rt, obj, memo, now)

    rec._decide = counting  # type: ignore[method-assign]

    async def settle() -> list[str]:
        await asyncio.sleep(0.3)  # several passes
        seen = sorted(looked)
        looked.clear()
        return seen

    async def scenario() -> None:
        task = asyncio.create_task(rec.loop())
        try:
            assert len(await settle()) == 200, "the first pass looks at every workload"
            assert await settle() == [], "nothing changed, nothing looked at"
            monitor._apply(JOBS, "jobs", "MODIFIED", running_job(7, rv=2))
            assert await settle() == ["run-i7"]
            monitor._apply(PODS, "jobs", "MODIFIED", running_pod(9))
            assert await settle() == ["run-i9"]
            finished = running_job(3, rv=3)
            finished["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
            monitor._apply(JOBS, "jobs", "MODIFIED", finished)  # its report is an action: a look when it ends
            assert await settle() == ["run-i3", "run-i3"]
            assert ledger.reported(monitor.objects[(JOBS.key, "jobs", "run-i3")]) == "finished"
            rec._full_at = 0.0
            assert len(await settle()) == 200, "a full pass every FULL_PASS_INTERVAL"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
