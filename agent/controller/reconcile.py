"""Reconcile: from each workload (the watch's view of it, its pods, its annotations) to what W&B is
told, one decision at a time, level-triggered.

Every pass looks at every workload of this agent and takes at most one action per workload, run
as its own task so a slow W&B never holds up the pass or the other runs:
- not acked yet -> ack (asking W&B first whether an earlier ack landed);
- a pod disruption seen -> written onto the workload (pods of evicted runs vanish soon after);
- ended (Job conditions, operator conventions) or deleted -> the final report (a failure, or the
  requeue of a preempted run), recorded on the workload, then the finalizer is removed;
- new warnings from pods and events -> reported once;
- never started within the start timeout (and not suspended) -> failed and deleted;
- a stop request older than `stopped_run_timeout` -> deleted.
One malformed object is logged and skipped; it never ends the pass.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.controller import ledger
from agent.controller.events import EVENTS_CHECK_INTERVAL, WarningEvents
from agent.controller.reports import resume_count, resume_spec
from agent.controller.status import (
    FAILED,
    FINISHED,
    RUNNING,
    STARTING,
    STOPPED,
    ever_started,
    init_failures,
    pod_running,
    pod_warnings,
    start_clock,
    suspended,
    workload_status,
)
from agent.kube.client import ResourceType
from agent.manifest import (
    ANN_ENTITY,
    ANN_ITEM_ID,
    ANN_PROJECT,
    ANN_QUEUE,
    ANN_RUN_ID,
    LABEL_ITEM,
    LABEL_ROLE,
    short_hash,
)

if TYPE_CHECKING:
    from agent.controller.agent import Agent

PASS_GAP = 0.05  # after a wake: the watch events of a burst coalesce into one pass
ACK_REFUSED_GRACE = 600.0  # keep a run whose ack was refused this long: W&B may hand the item out again
WATCH_REFUSED_AFTER = 30.0


class RetryLater(Exception):
    """An action could not finish now (W&B or the API server did not answer); it is taken again."""


@dataclass
class Memo:
    """What this process remembers about one item between passes (all of it can be lost)."""

    key: tuple[str, str, str]
    queue: str = ""
    busy: bool = False
    final: bool = False
    retry_at: float = 0.0
    failures: int = 0
    warned: set[str] = field(default_factory=set)
    events_checked_at: float = 0.0
    state: str = ""


class Reconciler:
    def __init__(self, agent: Agent) -> None:
        self.a = agent
        self.log = agent.log
        self.memos: dict[str, Memo] = {}
        self.events = WarningEvents(agent.kube)
        self._tasks: set[asyncio.Task[None]] = set()

    async def loop(self) -> None:
        while True:
            self.a.heartbeats.beat("reconcile")
            self.pass_once()
            await self.a.wait_change(timeout=1.0)
            await asyncio.sleep(PASS_GAP)

    async def drain(self, grace: float) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ the pass

    def pass_once(self) -> None:
        now = time.monotonic()
        for key, obj in list(self.a.monitor.objects.items()):
            rt = self.a.kinds.get(key[0])
            meta = obj.get("metadata") or {}
            if rt is None or (meta.get("labels") or {}).get(LABEL_ROLE) != "workload":
                continue
            item_id = str((meta.get("annotations") or {}).get(ANN_ITEM_ID) or "")
            if not item_id or item_id in self.a.pipeline.in_flight:
                continue
            memo = self.memos.get(item_id)
            if memo is None:
                # events only explain pods that fail to appear: the first look waits for them a while
                memo = self.memos[item_id] = Memo(key, queue=str(meta["annotations"].get(ANN_QUEUE, "")),
                                                  events_checked_at=now)
                if item_id not in self.a.launched_here and not ledger.reported(obj):
                    self.a.metrics.inc("items_adopted_total", "Workloads adopted from the cluster", queue=memo.queue)
                    self.log.info("re-adopted %s %s/%s for item %s (run %s)", rt.kind, key[1], key[2], item_id,
                                  meta["annotations"].get(ANN_RUN_ID, ""))
            memo.key = key
            if memo.busy or now < memo.retry_at:
                continue
            try:
                action = self._decide(rt, obj, memo, now)
            except Exception as exc:  # one malformed object never ends the pass
                self.log.warning("cannot reconcile %s %s/%s: %s: %s", rt.kind, key[1], key[2], type(exc).__name__, exc)
                memo.retry_at = now + 30.0
                continue
            if action is not None:
                self._spawn(item_id, memo, action)
        self._vanished()

    def _vanished(self) -> None:
        """Workloads deleted without the agent's finalizer (removed by hand, or from an agent that
        did not set one): their end is reported once, from memory."""
        for item_id, memo in list(self.memos.items()):
            if memo.key not in self.a.monitor.gone or memo.busy:
                continue
            if memo.final:
                self.memos.pop(item_id, None)
                continue
            kind = self.a.kinds[memo.key[0]].kind if memo.key[0] in self.a.kinds else memo.key[0]
            message = f"{kind} {memo.key[1]}/{memo.key[2]} was deleted before it finished"

            async def report(item_id: str = item_id, memo: Memo = memo, message: str = message) -> None:
                await self.a.reporter.fail(item_id, memo.queue, message, "run", check_first=True)
                memo.final = True
                self._count(memo.queue, FAILED)

            self._spawn(item_id, memo, report)

    def _spawn(self, item_id: str, memo: Memo, action: Callable[[], Awaitable[None]]) -> None:
        memo.busy = True

        async def run() -> None:
            try:
                await action()
                memo.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                memo.failures += 1
                memo.retry_at = time.monotonic() + min(2.0 ** memo.failures, 60.0)
                if not isinstance(exc, RetryLater):
                    self.log.warning("item %s: %s: %s (will retry)", item_id, type(exc).__name__, exc)
            finally:
                memo.busy = False
                self.a.wake()

        task = asyncio.create_task(run(), name=f"reconcile {item_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ decisions

    def _decide(self, rt: ResourceType, obj: dict[str, Any], memo: Memo,
                now: float) -> Callable[[], Awaitable[None]] | None:
        ann = ledger.annotations(obj)
        meta = obj["metadata"]
        outcome = ann.get(ledger.REPORTED, "")
        if outcome:
            memo.final = True
            if ledger.FINALIZER in ledger.finalizers(obj) and self._may_release(ann, outcome):
                return lambda: self._write(rt, obj, {}, release=True)
            return None
        if ledger.ACKED not in ann:
            return lambda: self._ack(rt, obj)
        label = (meta.get("labels") or {}).get(LABEL_ITEM, "")
        disruption = self.a.monitor.disruptions.get(label)
        if disruption and not ann.get(ledger.DISRUPTED):
            return lambda: self._write(rt, obj, {ledger.DISRUPTED: disruption})
        pods = list(self.a.monitor.pods.get(label, {}).values())
        status = workload_status(obj)
        state = status.state
        if state == STARTING and any(pod_running(p) for p in pods):
            state = RUNNING
        if state == RUNNING and memo.state != RUNNING:
            self.log.info("run %s (%s/%s) is running", ann.get(ANN_RUN_ID, ""), meta.get("namespace"), meta.get("name"))
        memo.state = state
        if meta.get("deletionTimestamp") and state not in (FINISHED, FAILED):
            if ann.get(ledger.STOP_REQUESTED):
                return lambda: self._finish(rt, obj, STOPPED, "stopped")
            return lambda: self._finish(rt, obj, FAILED, f"{rt.kind} {meta['namespace']}/{meta['name']} was "
                                        "deleted before it finished")
        if state in (FINISHED, FAILED):
            message = status.message or f"{rt.kind} {meta['name']} failed"
            if state == FAILED and init_failures(pods):  # the code fetch, say: its own line says why
                message = f"{message}; {'; '.join(init_failures(pods))}"
            return lambda: self._finish(rt, obj, state, message)
        refused = self.a.monitor.refused(rt, meta["namespace"], WATCH_REFUSED_AFTER)
        if refused is not None:
            message = (f"the agent cannot watch {rt.key} in {meta['namespace']} ({refused}), so it cannot follow "
                       "this run; grant its ServiceAccount list and watch on this kind")
            return lambda: self._end_early(rt, obj, message)
        texts = [t for p in pods for t in pod_warnings(p)] + self.events.texts(meta["namespace"], rt.kind, meta["name"])
        seen = set(ledger.warned(obj)) | memo.warned
        new = [t for t in dict.fromkeys(texts) if short_hash(t, length=8) not in seen]
        if new:
            return lambda: self._warn(rt, obj, memo, new)
        if state == STARTING and not pods and now - memo.events_checked_at >= EVENTS_CHECK_INTERVAL:
            memo.events_checked_at = now
            if self.events.claim(meta["namespace"], now):
                return lambda: self.events.refresh(meta["namespace"])
        timeout = self.a.s.start_timeout
        if state == STARTING and timeout > 0 and not suspended(obj) and not ever_started(obj, pods):
            clock = start_clock(obj)
            if clock is not None and (dt.datetime.now(dt.UTC) - clock).total_seconds() > timeout:
                message = f"the run did not start within {timeout:g}s"
                if texts:
                    message += f" ({texts[-1]})"
                return lambda: self._end_early(rt, obj, message)
        stop_age = ledger.seconds_since(ann.get(ledger.STOP_REQUESTED))
        if stop_age is not None and stop_age >= self.a.s.stopped_run_timeout and not meta.get("deletionTimestamp"):
            return lambda: self._delete(rt, obj)
        return None

    @staticmethod
    def _may_release(ann: dict[str, str], outcome: str) -> bool:
        acked = ann.get(ledger.ACKED, "")
        if acked == "true" or outcome == FAILED:
            return True
        if acked.startswith("refused"):
            age = ledger.seconds_since(acked)
            return age is None or age > ACK_REFUSED_GRACE
        return False

    # ------------------------------------------------------------------ actions

    async def _write(self, rt: ResourceType, obj: dict[str, Any], values: dict[str, str | None], *,
                     release: bool = False) -> dict[str, Any] | None:
        written = await ledger.record(self.a.kube, rt, obj, values, release=release)
        if values.get(ledger.REPORTED):
            memo = self.memos.get(ledger.annotations(obj).get(ANN_ITEM_ID, ""))
            if memo is not None:
                memo.final = True
        if written is not None:
            self.a.monitor.update(rt, written)
        return written

    async def _ack(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        ann = ledger.annotations(obj)
        result = await self.a.reporter.ack(ann[ANN_ITEM_ID], ann.get(ANN_QUEUE, ""), ann.get(ANN_RUN_ID, ""),
                                           check_first=True)
        if not result:
            raise RetryLater()
        await self._write(rt, obj, {ledger.ACKED: "true" if result == "true" else f"refused {ledger.now_text()}"})

    def _count(self, queue: str, state: str) -> None:
        self.a.metrics.inc("items_finished_total", "Workloads that reached a terminal state", queue=queue,
                           state=state)

    async def _finish(self, rt: ResourceType, obj: dict[str, Any], state: str, message: str) -> None:
        ann = ledger.annotations(obj)
        item_id, queue = ann[ANN_ITEM_ID], ann.get(ANN_QUEUE, "")
        label = (obj["metadata"].get("labels") or {}).get(LABEL_ITEM, "")
        disruption = ann.get(ledger.DISRUPTED) or self.a.monitor.disruptions.get(label)
        if state == FAILED and disruption:
            await self._requeue(rt, obj, disruption)
            return
        if state == FAILED and not await self.a.reporter.fail(item_id, queue, message, "run", check_first=True):
            raise RetryLater()
        if state == FAILED and ann.get(ledger.SCHEDULER) == "true":  # a scheduler job: its sweep ends
            await self.a.sweeps.cancel_sweep(ann.get(ANN_ENTITY, ""), ann.get(ANN_PROJECT, ""),
                                             ann.get(ANN_RUN_ID, ""), message)
        if state != FAILED:
            self.log.info("run %s (%s/%s) %s", ann.get(ANN_RUN_ID, ""), obj["metadata"]["namespace"],
                          obj["metadata"]["name"], state)
        await self._write(rt, obj, {ledger.REPORTED: state},
                          release=self._may_release(ann, state))
        self._count(queue, state)

    async def _end_early(self, rt: ResourceType, obj: dict[str, Any], message: str) -> None:
        """Fail a run the agent gives up on (start timeout, cannot watch) and delete its workload."""
        ann = ledger.annotations(obj)
        if not await self.a.reporter.fail(ann[ANN_ITEM_ID], ann.get(ANN_QUEUE, ""), message, "agent",
                                          check_first=True):
            raise RetryLater()
        await self._write(rt, obj, {ledger.REPORTED: FAILED}, release=True)
        self._count(ann.get(ANN_QUEUE, ""), FAILED)
        await self._delete(rt, obj)

    async def _delete(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        await self.a.kube.delete(rt, meta["namespace"], meta["name"])
        self.log.info("deleted %s %s/%s", rt.kind, meta["namespace"], meta["name"])

    async def _requeue(self, rt: ResourceType, obj: dict[str, Any], disruption: str) -> None:
        """A preempted run goes back on its queue once, as the same run (resumed), up to the cap."""
        a = self.a
        ann = ledger.annotations(obj)
        item_id, queue, run_id = ann[ANN_ITEM_ID], ann.get(ANN_QUEUE, ""), ann.get(ANN_RUN_ID, "")
        spec = ledger.run_spec_of(obj)
        cap = a.s.max_resumes
        base = {ledger.DISRUPTED: disruption}
        pending = ann.get(ledger.REQUEUE, "")
        if pending == "sending":  # an earlier push whose answer never came: never pushed twice
            await a.reporter.warn(item_id, f"run {run_id} was preempted ({disruption}); its requeue may not have "
                                  f"reached W&B: check queue {queue}")
            await self._write(rt, obj, {**base, ledger.REPORTED: "requeued", ledger.REQUEUE: "unconfirmed"},
                              release=self._may_release(ann, "requeued"))
            return
        count = resume_count(spec or {})
        if spec is None or count >= cap:
            why = (f"it has been resumed {count} times already, the limit (LAUNCH_AGENT_MAX_RESUMES={cap})"
                   if spec is not None else "its run spec was too large to keep on the workload")
            message = f"run {run_id} was preempted ({disruption}) and is not requeued: {why}"
            if not await a.reporter.fail(item_id, queue, message, "run", check_first=True):
                raise RetryLater()
            await self._write(rt, obj, {**base, ledger.REPORTED: FAILED}, release=True)
            self._count(queue, FAILED)
            return
        written = await self._write(rt, obj, {**base, ledger.REQUEUE: "sending"})
        outcome = await a.reporter.requeue(queue, resume_spec(spec, run_id), item_id)
        if not outcome.done:
            await self._write(rt, written or obj, {ledger.REQUEUE: None})
            raise RetryLater()
        new_id = outcome.value or "unconfirmed"
        self.log.info("run %s was preempted (%s); requeued as item %s (resume %d of %d)", run_id, disruption,
                      new_id, count + 1, cap)
        await a.reporter.warn(item_id, f"run {run_id} was preempted ({disruption}); requeued on {queue} as item "
                              f"{new_id} (resume {count + 1} of {cap})")
        await self._write(rt, written or obj, {ledger.REPORTED: "requeued", ledger.REQUEUE: new_id},
                          release=self._may_release(ann, "requeued"))
        self._count(queue, "requeued")

    async def _warn(self, rt: ResourceType, obj: dict[str, Any], memo: Memo, texts: list[str]) -> None:
        item_id = ledger.annotations(obj)[ANN_ITEM_ID]
        for text in texts:
            if await self.a.reporter.warn(item_id, text):
                memo.warned.add(short_hash(text, length=8))
        hashes = [*ledger.warned(obj), *(h for h in memo.warned if h not in ledger.warned(obj))]
        await self._write(rt, obj, {ledger.WARNED: ",".join(hashes[-ledger.KEPT_WARNINGS:])})
