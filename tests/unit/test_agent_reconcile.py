"""agent.controller.reconcile: one pass over the watch's view, with the agent's collaborators
replaced by plain objects (no cluster, no W&B)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

from agent.controller import ledger
from agent.controller.reconcile import EVENTS_CHECK_INTERVAL, Reconciler
from agent.kube.client import EVENTS, JOBS
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
