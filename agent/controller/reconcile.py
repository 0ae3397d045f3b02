"""Reconcile: from each workload (the watch's view of it, its pods, its annotations) to what W&B is
told, one decision at a time, level-triggered.

A pass looks at the workloads that changed since the last one (watch events, actions done, retries
due); every FULL_PASS_INTERVAL, and after a watch listed again, it looks at all of them (timeouts,
events). It takes at most one action per workload, run as its own task so a slow W&B never holds
up the pass or the other runs:
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.controller import ledger, preempted
from agent.controller.events import EVENTS_CHECK_INTERVAL, WarningEvents
from agent.controller.reports import RetryLater
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
from agent.kube.watch import Key
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
FULL_PASS_INTERVAL = 5.0  # every workload is looked at this often, changed or not
ACK_REFUSED_GRACE = 600.0  # keep a run whose ack was refused this long: W&B may hand the item out again
WATCH_REFUSED_AFTER = 30.0


@dataclass
class Memo:
    """What this process remembers about one item between passes (all of it can be lost)."""

    key: Key
    queue: str = ""
    label: str = ""  # the item label its pods carry
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
        self._full_at = 0.0  # when the next pass looks at every workload
        self._dirty: set[Key] = set()  # to look at in the next pass: an action ended, a launch in flight
        self._due: dict[Key, float] = {}  # to look at from then on: a retry, an events check
        self._by_item: dict[str, Key] = {}  # item label -> workload, for pod changes

    async def loop(self) -> None:
        while True:
            self.a.heartbeats.beat("reconcile")
            self.pass_changed()
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

    def pass_changed(self) -> None:
        """Look at what changed; at everything when a full pass is due or a watch listed again."""
        now = time.monotonic()
        changed, items, relisted = self.a.monitor.take_changes()
        if relisted or now >= self._full_at:
            self.pass_once()
            return
        keys = changed | self._dirty
        self._dirty = set()
        keys.update(self._by_item[i] for i in items if i in self._by_item)
        keys.update(k for k, at in self._due.items() if at <= now)
        objects = self.a.monitor.objects
        for key in keys:
            obj = objects.get(key)
            if obj is not None:
                self._look(key, obj, now)
        self._vanished()

    def pass_once(self) -> None:
        """Look at every workload."""
        now = time.monotonic()
        self._full_at = now + FULL_PASS_INTERVAL
        self._dirty = set()
        for key, obj in list(self.a.monitor.objects.items()):
            self._look(key, obj, now)
        self._vanished()

    def _look(self, key: Key, obj: dict[str, Any], now: float) -> None:
        rt = self.a.kinds.get(key[0])
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if rt is None or labels.get(LABEL_ROLE) != "workload":
            return
        item_id = str((meta.get("annotations") or {}).get(ANN_ITEM_ID) or "")
        if not item_id:
            return
        if item_id in self.a.pipeline.in_flight:
            self._dirty.add(key)  # the pipeline still owns it: looked at again once it let go
            return
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
        label = str(labels.get(LABEL_ITEM, ""))
        if label and memo.label != label:
            memo.label = label
            self._by_item[label] = key
        if memo.busy:
            return  # looked at again when its action ends
        if now < memo.retry_at:
            self._due[key] = memo.retry_at
            return
        self._due.pop(key, None)
        try:
            action = self._decide(rt, obj, memo, now)
        except Exception as exc:  # one malformed object never ends the pass
            self.log.warning("cannot reconcile %s %s/%s: %s: %s", rt.kind, key[1], key[2], type(exc).__name__, exc)
            memo.retry_at = now + 30.0
            return
        if action is not None:
            self._spawn(item_id, memo, action)

    def _vanished(self) -> None:
        """Workloads deleted without the agent's finalizer (removed by hand, or from an agent that
        did not set one): their end is reported once, from memory."""
        for item_id, memo in list(self.memos.items()):
            if memo.key not in self.a.monitor.gone or memo.busy:
                continue
            if memo.final:
                self._forget(item_id, memo)
                continue
            kind = self.a.kinds[memo.key[0]].kind if memo.key[0] in self.a.kinds else memo.key[0]
            message = f"{kind} {memo.key[1]}/{memo.key[2]} was deleted before it finished"

            async def report(item_id: str = item_id, memo: Memo = memo, message: str = message) -> None:
                await self.a.reporter.fail(item_id, memo.queue, message, "run", check_first=True)
                memo.final = True
                self.count(memo.queue, FAILED)

            self._spawn(item_id, memo, report)

    def _forget(self, item_id: str, memo: Memo) -> None:
        self.memos.pop(item_id, None)
        self._due.pop(memo.key, None)
        if self._by_item.get(memo.label) == memo.key:
            del self._by_item[memo.label]

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
                self._dirty.add(memo.key)
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
            if ledger.FINALIZER in ledger.finalizers(obj) and self.may_release(ann, outcome):
                return lambda: self.write(rt, obj, {}, release=True)
            return None
        if ledger.ACKED not in ann:
            return lambda: self._ack(rt, obj)
        label = (meta.get("labels") or {}).get(LABEL_ITEM, "")
        disruption = self.a.monitor.disruptions.get(label)
        if disruption and not ann.get(ledger.DISRUPTED):
            return lambda: self.write(rt, obj, {ledger.DISRUPTED: disruption})
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
        if state == STARTING and not pods:
            if now - memo.events_checked_at < EVENTS_CHECK_INTERVAL:
                self._due[memo.key] = memo.events_checked_at + EVENTS_CHECK_INTERVAL
            else:
                memo.events_checked_at = now
                if self.events.claim(meta["namespace"], now):
                    return lambda: self._refresh_events(meta["namespace"])
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
    def may_release(ann: Mapping[str, str], outcome: str) -> bool:
        acked = ann.get(ledger.ACKED, "")
        if acked == "true" or outcome == FAILED:
            return True
        if acked.startswith("refused"):
            age = ledger.seconds_since(acked)
            return age is None or age > ACK_REFUSED_GRACE
        return False

    # ------------------------------------------------------------------ actions

    async def _refresh_events(self, namespace: str) -> None:
        await self.events.refresh(namespace)
        self._full_at = 0.0  # every waiting workload of the namespace reads the new list

    async def write(self, rt: ResourceType, obj: dict[str, Any], values: dict[str, str | None], *,
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
        await self.write(rt, obj, {ledger.ACKED: "true" if result == "true" else f"refused {ledger.now_text()}"})

    def count(self, queue: str, state: str) -> None:
        self.a.metrics.inc("items_finished_total", "Workloads that reached a terminal state", queue=queue,
                           state=state)

    async def _finish(self, rt: ResourceType, obj: dict[str, Any], state: str, message: str) -> None:
        ann = ledger.annotations(obj)
        item_id, queue = ann[ANN_ITEM_ID], ann.get(ANN_QUEUE, "")
        label = (obj["metadata"].get("labels") or {}).get(LABEL_ITEM, "")
        disruption = ann.get(ledger.DISRUPTED) or self.a.monitor.disruptions.get(label)
        if state == FAILED and disruption:
            await preempted.requeue(self, rt, obj, disruption)
            return
        if state == FAILED and not await self.a.reporter.fail(item_id, queue, message, "run", check_first=True):
            raise RetryLater()
        if state == FAILED and ann.get(ledger.SCHEDULER) == "true":  # a scheduler job: its sweep ends
            await self.a.sweeps.cancel_sweep(ann.get(ANN_ENTITY, ""), ann.get(ANN_PROJECT, ""),
                                             ann.get(ANN_RUN_ID, ""), message)
        if state != FAILED:
            self.log.info("run %s (%s/%s) %s", ann.get(ANN_RUN_ID, ""), obj["metadata"]["namespace"],
                          obj["metadata"]["name"], state)
        await self.write(rt, obj, {ledger.REPORTED: state},
                          release=self.may_release(ann, state))
        self.count(queue, state)

    async def _end_early(self, rt: ResourceType, obj: dict[str, Any], message: str) -> None:
        """Fail a run the agent gives up on (start timeout, cannot watch) and delete its workload."""
        ann = ledger.annotations(obj)
        if not await self.a.reporter.fail(ann[ANN_ITEM_ID], ann.get(ANN_QUEUE, ""), message, "agent",
                                          check_first=True):
            raise RetryLater()
        await self.write(rt, obj, {ledger.REPORTED: FAILED}, release=True)
        self.count(ann.get(ANN_QUEUE, ""), FAILED)
        await self._delete(rt, obj)

    async def _delete(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        await self.a.kube.delete(rt, meta["namespace"], meta["name"])
        self.log.info("deleted %s %s/%s", rt.kind, meta["namespace"], meta["name"])

    async def _warn(self, rt: ResourceType, obj: dict[str, Any], memo: Memo, texts: list[str]) -> None:
        item_id = ledger.annotations(obj)[ANN_ITEM_ID]
        for text in texts:
            if await self.a.reporter.warn(item_id, text):
                memo.warned.add(short_hash(text, length=8))
        hashes = [*ledger.warned(obj), *(h for h in memo.warned if h not in ledger.warned(obj))]
        await self.write(rt, obj, {ledger.WARNED: ",".join(hashes[-ledger.KEPT_WARNINGS:])})
