"""Stop requests from W&B ("Stop run" in the UI): every `STOP_CHECK_INTERVAL` seconds each running
workload's run is asked for (`RunStoppedStatus`, like the official agent, but `STOPPED_BATCH`
runs per request). The first `stopped` answer is written onto the workload; the reconciler
deletes it once `stopped_run_timeout` has passed (the run may exit by itself meanwhile),
counting from that annotation, so a restart does not start the clock again."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from agent.backend.operations import STOPPED_BATCH
from agent.backend.transport import BackendError
from agent.controller import ledger
from agent.manifest import ANN_ENTITY, ANN_ITEM_ID, ANN_PROJECT, ANN_RUN_ID

if TYPE_CHECKING:
    from agent.controller.agent import Agent

STOP_CHECK_INTERVAL = 10.0
STOP_CHECK_CONCURRENCY = 4  # batched queries in flight at once: the launch path keeps the rest of the W&B client

Key = tuple[str, str, str]


class StopChecks:
    def __init__(self, agent: Agent, interval: float = STOP_CHECK_INTERVAL) -> None:
        self.a = agent
        self.interval = interval

    async def loop(self) -> None:
        while True:
            self.a.heartbeats.beat("stops")
            due = [(key, obj) for key, obj in self.a.active_workloads()
                   if not (obj.get("metadata") or {}).get("deletionTimestamp")
                   and not ledger.annotations(obj).get(ledger.STOP_REQUESTED)
                   and ledger.annotations(obj).get(ANN_ENTITY)]
            if due:
                # One request per STOPPED_BATCH runs (aliased copies of the official query), not one per run.
                limit = asyncio.Semaphore(STOP_CHECK_CONCURRENCY)
                await asyncio.gather(*(self._bounded(limit, due[i:i + STOPPED_BATCH])
                                       for i in range(0, len(due), STOPPED_BATCH)))
            await asyncio.sleep(self.interval)

    async def _bounded(self, limit: asyncio.Semaphore, batch: list[tuple[Key, dict[str, Any]]]) -> None:
        async with limit:
            await self._check(batch)

    async def _check(self, batch: list[tuple[Key, dict[str, Any]]]) -> None:
        runs = [(ann[ANN_ENTITY], ann.get(ANN_PROJECT, ""), ann.get(ANN_RUN_ID, ""))
                for ann in (ledger.annotations(obj) for _, obj in batch)]
        try:
            answers = await self.a.backend.runs_stopped(runs)
        except BackendError as exc:
            self.a.log.warning("RunStoppedStatus for %d run(s) failed: %s", len(runs), exc)
            return
        for (key, obj), (_, _, run_id), stopped in zip(batch, runs, answers, strict=True):
            if stopped is None:
                self.a.log.warning("RunStoppedStatus for %s failed: W&B answered with an error", run_id)
            elif stopped:
                await self._stopped(key, obj)

    async def _stopped(self, key: Key, obj: dict[str, Any]) -> None:
        ann = ledger.annotations(obj)
        rt = self.a.kinds.get(key[0])
        if rt is None:
            return
        self.a.log.info("stop requested for run %s (item %s); deleting its workload after %gs unless it exits",
                        ann.get(ANN_RUN_ID), ann.get(ANN_ITEM_ID), self.a.s.stopped_run_timeout)
        try:
            written = await ledger.record(self.a.kube, rt, obj, {ledger.STOP_REQUESTED: ledger.now_text()})
        except Exception as exc:
            self.a.log.warning("recording the stop request of run %s failed: %s", ann.get(ANN_RUN_ID), exc)
            return
        if written is not None:
            self.a.monitor.update(rt, written)
        self.a.wake()
