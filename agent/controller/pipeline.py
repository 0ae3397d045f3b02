"""The launch pipeline: pop -> prepare -> create -> ack, one task per item.

Popping runs in its own loop: it pops only while this process may (it holds the lease, its view
of the cluster is complete, it is not shutting down) and while a slot is free (`max_jobs` counts
items in this pipeline plus workloads whose end is not reported yet). Queues are tried in order;
the queue that gave an item goes to the end (the official agent's round robin), and a queue's own
priority order is W&B's. While the queues give items, up to `pop_width` pops are in flight at once,
each holding a slot until it answers, so `max_jobs` is never passed; a queue that answered empty
is left until the burst ends; then, if any item came, every queue is asked again, and once a round
of pops finds every queue empty the next poll comes after the poll interval. Each item then runs on its own: a slow item (an image build) holds its
slot, never the others. The workload is created before the ack, so a lost ack or a crash never
loses a run; a durable prepare step (see `prepare`) acks early behind a launch record instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.backend.operations import PoppedItem
from agent.backend.sweep_spec import is_scheduler, runs_in_agent
from agent.backend.transport import BackendError
from agent.controller import ledger
from agent.controller.creating import Created, KubeUnavailable, Refused, create_objects
from agent.controller.prepare import (
    LeaveQueued,
    PrepareContext,
    PrepareError,
    item_of_record,
    progress_of_record,
    record_name,
    record_object,
    save_progress,
)
from agent.controller.reports import ACK_DONE, ACK_REFUSED
from agent.kube.client import CONFIGMAPS, KubeError
from agent.manifest import ManifestError, build_workload

if TYPE_CHECKING:
    from agent.controller.agent import Agent

# A scheduler that is a job may come with the CLI's default resource; on this agent it runs on Kubernetes.
SCHEDULER_RESOURCES = (None, "", "kubernetes", "local-container")
CREATE_ATTEMPTS = 5


def derived_run_id(item_id: str) -> str:
    """A run id for specs without one, stable per item (8 base-36 chars, like W&B's)."""
    n = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")
    alphabet = string.digits + string.ascii_lowercase
    out = ""
    for _ in range(8):
        n, r = divmod(n, 36)
        out += alphabet[r]
    return out


@dataclass
class Launch:
    item: PoppedItem
    record: dict[str, Any] | None = None  # the launch record, once a durable step needs one
    acked: bool = False
    step: str = "popped"
    admitted: bool = False  # a sweep scheduler past the max_schedulers check: it counts against the cap


class Pipeline:
    def __init__(self, agent: Agent) -> None:
        self.a = agent
        self.log: logging.Logger = agent.log
        self.queue_order = list(agent.s.queues)
        self.in_flight: dict[str, Launch] = {}
        self.pops = 0
        self.popped = 0  # items popped by this process
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ popping

    async def poll_loop(self) -> None:
        a = self.a
        while True:
            a.heartbeats.beat("poll")
            if a.stopping.is_set():
                return  # shutting down: nothing more is popped, and the pops of a burst have ended
            if not self._may_pop():
                await a.wait_change(timeout=1.0)  # a slot frees, the lease comes back
                continue
            before = self.popped
            if await self._pop_burst():
                if self.popped > before:
                    # Items came: every queue is asked again before the agent sleeps (the official
                    # agent's rounds), so a queue that was empty early in a burst is not left a whole
                    # poll interval behind the others.
                    continue
                # Every queue answered empty: the next poll after the interval (shutdown cuts it short).
                await a.wait_change(timeout=a.s.poll_interval, stop_only=True)

    def _may_pop(self) -> bool:
        return self.a.may_pop() and self.a.free_slots() - self.pops > 0

    def _next_queue(self, empty: set[str], busy: dict[str, int]) -> str | None:
        """The first queue in round-robin order that has not answered empty, preferring one with
        no pop in flight."""
        open_queues = [q for q in self.queue_order if q not in empty]
        if not open_queues:
            return None
        return min(open_queues, key=lambda q: busy.get(q, 0))

    async def _pop_burst(self) -> bool:
        """Pop until every queue answered empty (True) or no slot is left (False). Up to
        `pop_width` pops are in flight at once, each reserving a slot: one to start with (an idle
        poll costs one pop per queue), twice as many after each item, so a burst on the queues is
        drained at the W&B round trip divided by the width."""
        empty: set[str] = set()
        pending: dict[asyncio.Task[PoppedItem | None], str] = {}
        width = 1
        try:
            while True:
                self.a.heartbeats.beat("poll")
                busy: dict[str, int] = {}
                for q in pending.values():
                    busy[q] = busy.get(q, 0) + 1
                while len(pending) < width and self._may_pop():
                    queue = self._next_queue(empty, busy)
                    if queue is None:
                        break
                    busy[queue] = busy.get(queue, 0) + 1
                    pending[asyncio.create_task(self._pop_one(queue), name=f"pop {queue}")] = queue
                    self.pops = len(pending)
                if not pending:
                    return len(empty) >= len(self.queue_order)
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    queue = pending.pop(task)
                    item = task.result()
                    if item is None:
                        empty.add(queue)
                        continue
                    self.popped += 1
                    width = min(width * 2, self.a.s.pop_width)
                    self.queue_order.remove(queue)
                    self.queue_order.append(queue)
                    self.start(item)
                self.pops = len(pending)
        finally:
            for task in pending:
                task.cancel()
            if pending:
                # A pop cancelled in flight may have claimed an item: W&B hands it out again
                # when the claim expires.
                await asyncio.gather(*pending, return_exceptions=True)
            self.pops = 0

    async def _pop_one(self, queue: str) -> PoppedItem | None:
        try:
            item = await self.a.backend.pop(queue, self.a.agent_id)
        except BackendError as exc:
            # Never sent twice: an item claimed by a pop whose answer was lost goes back on its
            # queue when the claim expires. The queue counts as empty until the next poll.
            self.a.metrics.inc("backend_errors_total", "Failed W&B API calls", operation="popFromRunQueue")
            self.log.warning("pop from %s failed: %s (will retry)", queue, exc)
            return None
        if item is not None:
            self.a.metrics.inc("items_popped_total", "Run-queue items popped", queue=queue)
            self.log.info("popped item %s from %s", item.item_id, queue)
        return item

    def start(self, item: PoppedItem, record: dict[str, Any] | None = None) -> None:
        if item.item_id in self.in_flight:
            # Popped again while its first launch still runs (its claim expired meanwhile): that
            # launch goes on and acks it; a second one would only race it.
            self.log.info("item %s is being launched already", item.item_id)
            return
        launch = Launch(item, record, acked=record is not None and ledger.acked(record), admitted=record is not None)
        self.in_flight[item.item_id] = launch
        task = asyncio.create_task(self._run(launch), name=f"launch {item.item_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def resume(self, record: dict[str, Any]) -> bool:
        """Continue an item from its launch record (after a restart or a failover)."""
        item = item_of_record(record)
        if item is None or item.item_id in self.in_flight:
            return False
        self.log.info("resuming item %s from its launch record", item.item_id)
        self.start(item, record)
        return True

    async def drain(self, grace: float) -> None:
        """Shutdown: items being prepared stop at once (their records stay); creates and acks in
        flight get up to `grace` seconds."""
        for launch in self.in_flight.values():
            if launch.step.startswith("prepare"):
                for task in self._tasks:
                    if task.get_name() == f"launch {launch.item.item_id}":
                        task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ one item

    async def _run(self, launch: Launch) -> None:
        item = launch.item
        try:
            await self._steps(launch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a spec nobody foresaw must not stop the agent
            self.log.exception("launching item %s failed", item.item_id)
            await self._fail(launch, f"the agent could not launch this item: {type(exc).__name__}: {exc}", "agent")
        finally:
            self.in_flight.pop(item.item_id, None)
            self.a.wake()

    async def _fail(self, launch: Launch, message: str, stage: str) -> None:
        await self.a.reporter.fail(launch.item.item_id, launch.item.queue, message, stage,
                                   check_first=launch.record is not None)
        await self._drop_record(launch)

    async def _drop_record(self, launch: Launch) -> None:
        if launch.record is None:
            return
        meta = launch.record["metadata"]
        try:
            await self.a.kube.delete(CONFIGMAPS, meta["namespace"], meta["name"])
        except Exception as exc:  # the next resync deletes it
            self.log.warning("deleting launch record %s failed: %s", meta["name"], exc)

    async def _steps(self, launch: Launch) -> None:
        a, item = self.a, launch.item
        spec = dict(item.run_spec)
        if not spec:
            await self._fail(launch, "the run spec of this item is empty or not an object", "agent")
            return
        scheduler = is_scheduler(spec)
        if scheduler:
            try:
                await a.sweeps.adopt_once()
            except Exception as exc:  # the API server away: W&B hands the item out again later
                self.log.warning("item %s is a sweep scheduler and the recorded schedulers cannot be resumed yet "
                                 "(%s); leaving it queued", item.item_id, exc)
                return
            # Counted from here on: of two scheduler items popped together only the first is admitted.
            if launch.record is None and a.schedulers(besides=item.item_id) >= a.s.max_schedulers:
                # Like the official agent: not acked, so W&B hands the item out again later.
                self.log.info("item %s is a sweep scheduler and max_schedulers (%g) are running; leaving it queued",
                              item.item_id, a.s.max_schedulers)
                return
            launch.admitted = True
        if runs_in_agent(spec):  # the default scheduler runs inside the agent (agent.backend.sweep_manager)
            await a.sweeps.accept(item)
            return
        resource = spec.get("resource")
        if resource not in (SCHEDULER_RESOURCES if scheduler else (None, "", "kubernetes")):
            await self._fail(launch, f"this agent launches on Kubernetes only; the item asks for resource "
                             f"{resource!r}", "agent")
            return
        refusal = await a.sweeps.refusal(spec)
        if refusal:
            await self._fail(launch, refusal, "agent")
            return
        spec["run_id"] = str(spec.get("run_id") or derived_run_id(item.item_id))
        popped = dict(spec)
        settings = a.s.manifest_settings()
        job: Any = None
        for preparer in a.stage.preparers:
            if not preparer.wants(spec):
                continue
            if preparer.durable and launch.record is None and not await self._record(launch):
                return
            launch.step = f"prepare {preparer.name}"
            record = launch.record
            ctx = PrepareContext(item=item, spec=spec, kube=a.kube, backend=a.backend, log=self.log,
                                 settings=settings, progress=progress_of_record(record) if record else {}, job=job,
                                 _save=(lambda p, r=record: save_progress(a.kube, r, p)) if record else None)
            try:
                async with a.stage.limit(preparer):
                    spec = dict(await preparer.prepare(ctx))
            except PrepareError as exc:
                await self._fail(launch, exc.message, exc.stage)
                return
            except LeaveQueued as exc:
                if launch.record is None:
                    self.log.warning("item %s: %s; W&B hands it out again", item.item_id, exc)
                    return
                raise
            job = ctx.job
        launch.step = "create"
        try:
            objs = build_workload(spec, item_id=item.item_id, queue=item.queue, settings=settings, job=job)
        except ManifestError as exc:
            await self._fail(launch, exc.message if exc.rule in ("namespace",) else str(exc), "agent")
            return
        ledger.stamp_new(objs[-1], spec=popped, scheduler=scheduler)
        if launch.acked:
            objs[-1]["metadata"]["annotations"][ledger.ACKED] = "true"
        created = await self._create(launch, objs)
        if created is None:
            return
        rt, workload = created.rt, created.workload
        ns, name = workload["metadata"]["namespace"], workload["metadata"]["name"]
        a.track_kind(rt, ns)
        a.monitor.inject(rt, workload)
        a.launched_here.add(item.item_id)
        if created.new:
            a.metrics.inc("items_launched_total", "Workloads created", queue=item.queue)
            self.log.info("launched %s %s/%s for item %s (run %s)", rt.kind, ns, name, item.item_id, spec["run_id"])
        else:
            self.log.info("item %s was launched already as %s %s/%s; adopting it", item.item_id, rt.kind, ns, name)
        if not launch.acked and not ledger.acked(workload):
            launch.step = "ack"
            result = await a.reporter.ack(item.item_id, item.queue, spec["run_id"], check_first=not created.new)
            if result in (ACK_DONE, ACK_REFUSED):
                value = "true" if result == ACK_DONE else f"refused {ledger.now_text()}"
                try:
                    written = await ledger.record(a.kube, rt, workload, {ledger.ACKED: value})
                    if written is not None:
                        a.monitor.update(rt, written)
                except Exception as exc:  # the reconciler asks W&B again and records it
                    self.log.warning("recording the ack of item %s failed: %s", item.item_id, exc)
        await self._drop_record(launch)

    async def _record(self, launch: Launch) -> bool:
        """Write the launch record and ack, before a step that may take minutes. False: stop here."""
        a, item = self.a, launch.item
        launch.step = "record"
        obj = record_object(item, a.s.manifest_settings())
        try:
            got, _ = await a.kube.create(obj)
        except Exception as exc:
            # Not acked: W&B hands the item out again when its claim expires.
            self.log.warning("cannot write the launch record of item %s: %s; leaving it to W&B", item.item_id, exc)
            return False
        launch.record = got
        if ledger.acked(got):
            launch.acked = True
            return True
        run_id = str(item.run_spec.get("run_id") or derived_run_id(item.item_id))
        result = await a.reporter.ack(item.item_id, item.queue, run_id)
        if result != ACK_DONE:
            self.log.warning("item %s was not acked (%s); leaving it to W&B", item.item_id, result or "no answer")
            await self._drop_record(launch)
            return False
        launch.acked = True
        try:
            written = await a.kube.patch(CONFIGMAPS, got["metadata"]["namespace"], record_name(item.item_id),
                                         {"metadata": {"annotations": {ledger.ACKED: "true"}}})
            launch.record = written or got
        except KubeError as exc:
            self.log.warning("recording the ack on launch record of item %s failed: %s", item.item_id, exc)
        return True

    async def _create(self, launch: Launch, objs: list[dict[str, Any]]) -> Created | None:
        a, item = self.a, launch.item
        delay = 1.0
        attempt = 0
        while True:
            attempt += 1
            try:
                return await create_objects(a.kube, objs, item.item_id)
            except Refused as exc:
                await self._fail(launch, str(exc), "agent")
                return None
            except KubeUnavailable as exc:
                # Durable items are acked: keep trying. Others go back to W&B when the claim expires
                # (and a workload created meanwhile is adopted on the next pop or resync).
                if launch.record is None and attempt >= CREATE_ATTEMPTS:
                    self.log.warning("creating the objects of item %s failed: %s; W&B will hand it out again",
                                     item.item_id, exc)
                    return None
                self.log.warning("creating the objects of item %s failed: %s; retrying in %.0fs", item.item_id,
                                 exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
