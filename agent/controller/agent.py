"""The agent as a controller: it registers with W&B, then runs independent loops until SIGTERM,
`stopPolling`, or the loss of its lease.

    poll       pipeline: pop -> prepare -> create -> ack, one task per item   (pipeline.py)
    reconcile  workloads -> W&B: acks, final reports, requeues, timeouts      (reconcile.py)
    stops      stop requests from W&B                                        (stops.py)
    status     stopPolling and the agent's status heartbeat                  (here)
    resync     kinds and namespaces to watch, a fresh list, launch records   (resync.py)

What the agent has told W&B lives on the workloads (ledger.py), so nothing here needs to survive
a restart. Each loop beats a heartbeat; each waits only on bounded calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from agent.backend.jobs import JobResolver
from agent.backend.operations import Backend
from agent.backend.sweep_manager import SweepSchedulers
from agent.backend.sweep_spec import is_scheduler
from agent.backend.transport import BackendError
from agent.config import AgentSettings
from agent.controller import ledger
from agent.controller.pipeline import Pipeline, derived_run_id
from agent.controller.prepare import Preparer, Stage
from agent.controller.reconcile import Reconciler
from agent.controller.reports import Reporter
from agent.controller.resync import Resync
from agent.controller.stops import StopChecks
from agent.health import Heartbeats
from agent.kube.client import JOBS, PODS, Kube, ResourceType
from agent.kube.watch import Monitor
from agent.manifest import ANN_ITEM_ID, ANN_QUEUE, LABEL_ROLE, selector
from agent.metrics import Metrics

__all__ = ["Agent", "FatalError", "derived_run_id"]


class FatalError(Exception):
    """The agent cannot run (bad queue names, entity not accessible): exit 2."""


class Agent:
    def __init__(self, settings: AgentSettings, backend: Backend, kube: Kube, metrics: Metrics,
                 log: logging.Logger, *, preparers: Iterable[Preparer] = (), heartbeats: Heartbeats | None = None,
                 gate: Callable[[], bool] | None = None, jobs: JobResolver | None = None) -> None:
        self.s = settings
        self.backend = backend
        self.kube = kube
        self.metrics = metrics
        self.log = log
        self.heartbeats = heartbeats or Heartbeats()
        self.gate = gate or (lambda: True)  # the lease: False the moment this process may not lead
        self.agent_id = ""
        self.agent_name = ""
        self.selector = selector(settings.manifest_settings())
        self.monitor = Monitor(kube, self.selector, log=log, on_event=self.wake,
                               workload_selector=f"{self.selector},{LABEL_ROLE}=workload")
        self.kinds: dict[str, ResourceType] = {JOBS.key: JOBS}
        self.launched_here: set[str] = set()
        self.reporter = Reporter(backend, metrics, log)
        self.stage = Stage(list(preparers))
        self.pipeline = Pipeline(self)
        self.reconciler = Reconciler(self)
        self.stops = StopChecks(self)
        self.resync = Resync(self, interval=settings.resync_interval)
        self.sweeps = SweepSchedulers(settings, backend, kube, metrics, log, jobs=jobs)
        self.stopping = asyncio.Event()
        self.stop_polling = asyncio.Event()
        self.ready = False
        self._wakes: list[asyncio.Event] = []
        self._slots: tuple[int, tuple[frozenset[str], frozenset[str]]] = (-1, (frozenset(), frozenset()))
        if kube.observe is None:
            kube.observe = lambda verb, seconds: metrics.observe(
                "kube_request_seconds", "Kubernetes API latency", seconds, verb=verb)

    # ------------------------------------------------------------------ shared state

    def wake(self) -> None:
        for event in self._wakes:
            event.set()

    async def wait_change(self, timeout: float, *, stop_only: bool = False) -> None:
        """Sleep until something changed (a watch event, an action done) or `timeout`;
        with `stop_only`, only shutdown cuts the sleep short."""
        event = asyncio.Event()
        if not stop_only:
            self._wakes.append(event)
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.stopping.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            if event in self._wakes:
                self._wakes.remove(event)

    def track_kind(self, rt: ResourceType, namespace: str) -> None:
        self.kinds[rt.key] = rt
        self.monitor.ensure(rt, namespace)
        self.monitor.ensure(PODS, namespace)

    def active_workloads(self) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
        """Workloads of this agent whose end W&B has not been told yet (each holds a slot)."""
        out = []
        for key, obj in list(self.monitor.objects.items()):
            meta = obj.get("metadata") or {}
            if (meta.get("labels") or {}).get(LABEL_ROLE) != "workload" or ledger.reported(obj):
                continue
            out.append((key, obj))
        return out

    def _occupied(self, schedulers: bool) -> set[str]:
        # A scheduler item in flight counts once it passed the max_schedulers check (`admitted`).
        items = {i for i, launch in self.pipeline.in_flight.items()
                 if is_scheduler(launch.item.run_spec) == schedulers and (launch.admitted or not schedulers)}
        items.update(self._slot_items()[1 if schedulers else 0])
        return items

    def _slot_items(self) -> tuple[frozenset[str], frozenset[str]]:
        """Items of the workloads holding a slot: (runs, sweep schedulers). Derived from the watch's
        view and recomputed only when it changed (the poll loop asks before every pop)."""
        if self._slots[0] != self.monitor.generation:
            runs: set[str] = set()
            schedulers: set[str] = set()
            for _, obj in self.active_workloads():
                ann = ledger.annotations(obj)
                if ann.get(ANN_ITEM_ID):
                    (schedulers if ann.get(ledger.SCHEDULER) == "true" else runs).add(ann[ANN_ITEM_ID])
            self._slots = (self.monitor.generation, (frozenset(runs), frozenset(schedulers)))
        return self._slots[1]

    def free_slots(self) -> float:
        return self.s.max_jobs - len(self._occupied(schedulers=False))

    def schedulers(self, *, besides: str = "") -> int:
        """Sweep schedulers running or being launched, other than item `besides`: scheduler workloads
        and in-process schedulers."""
        return len(self._occupied(schedulers=True) - {besides}) + self.sweeps.running()

    def may_pop(self) -> bool:
        return (bool(self.agent_id) and self.resync.done_once.is_set() and not self.stopping.is_set()
                and not self.stop_polling.is_set() and self.gate())

    # ------------------------------------------------------------------ startup

    async def register(self) -> None:
        if not self.s.entity:
            entity = await self.backend.viewer_entity()
            self.s = dataclasses.replace(self.s, entity=entity)
            self.backend.entity = entity
            self.log.info("using the API key's default entity %s", entity)
        queues = await self.backend.run_queues()
        by_name = {q["name"]: q["id"] for q in queues}
        missing = [q for q in self.s.queues if q not in by_name]
        if missing:
            raise FatalError(f"queue(s) {', '.join(missing)} not found in {self.s.entity}/model-registry "
                             f"(available: {', '.join(sorted(by_name)) or 'none'})")
        self.agent_id = await self.backend.create_launch_agent(
            [by_name[q] for q in self.s.queues], socket.gethostname(), dict(self.s.agent_config), self.s.version)
        if await self.backend.entity_is_team():
            self.log.info("entity %s is a team entity", self.s.entity)
        info = await self.backend.launch_agent(self.agent_id)
        self.agent_name = str(info.get("name") or self.agent_id)
        self.log.info("registered as launch agent %s (id %s) polling %s", self.agent_name, self.agent_id,
                      ", ".join(self.s.queues))

    async def _register_until(self, stop: asyncio.Event) -> bool:
        delay = 1.0
        while not stop.is_set():
            task = asyncio.ensure_future(self.register())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                return False
            try:
                task.result()
                return True
            except BackendError as exc:
                if not exc.retryable:
                    raise
                self.log.warning("registering with W&B failed: %s; retrying in %.0fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)
        return False

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event, *, leader_lost: asyncio.Event | None = None) -> None:
        """Run until stop (SIGTERM), stopPolling, or leader_lost (then everything stops at once)."""
        if not await self._register_until(stop):
            return
        query_worst = self.backend.worst_case(mutation=False)
        mutation_worst = self.backend.worst_case(mutation=True)
        loops: dict[str, tuple[Callable[[], Coroutine[Any, Any, None]], float]] = {
            "resync": (self.resync.loop, self.s.resync_interval + 600.0),
            "reconcile": (self.reconciler.loop, 120.0),
            "poll": (self.pipeline.poll_loop, mutation_worst + self.s.poll_interval + 60.0),
            "stops": (self.stops.loop, query_worst + self.stops.interval + 60.0),
            "status": (self._status_loop, query_worst + mutation_worst + self.s.poll_interval + 60.0),
            "sweeps": (self._sweeps_loop, self.s.resync_interval + 600.0),
        }
        tasks = []
        for name, (body, silence) in loops.items():
            self.heartbeats.register(name, silence)
            tasks.append(asyncio.create_task(self._supervise(name, body), name=name))
        self.ready = True
        ends = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.stop_polling.wait())]
        if leader_lost is not None:
            ends.append(asyncio.ensure_future(leader_lost.wait()))
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for e in ends:
                e.cancel()
            await self._shutdown(tasks, lost=leader_lost is not None and leader_lost.is_set())
            for name in loops:
                self.heartbeats.unregister(name)

    async def _shutdown(self, tasks: list[asyncio.Task[None]], *, lost: bool) -> None:
        self.stopping.set()
        self.wake()
        poll = next(t for t in tasks if t.get_name() == "poll")
        if lost:
            self.log.error("not the leader any more: stopping at once; the new leader takes over the runs")
            for task in tasks:
                task.cancel()
            await self.pipeline.cancel()
            await self.reconciler.cancel()
            await self.sweeps.aclose(at_once=True)
        else:
            if self.stop_polling.is_set():
                self.log.info("W&B asked this agent to stop polling")
            self.log.info("stopping: no new items are popped; running workloads keep running")
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(poll), 5.0)  # a pop in flight may finish
            poll.cancel()
            grace = self.s.shutdown_grace
            await self.pipeline.drain(grace)
            await self.sweeps.aclose()  # schedulers stop where they are and resume on the next start
            self.reconciler.pass_once()  # reports that are due go out before the process ends
            await self.reconciler.drain(grace)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.backend.update_launch_agent(self.agent_id, "KILLED"), 5.0)
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Keep one loop running; a defect in it is logged and the loop starts over."""
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("the %s loop failed; restarting it", name)
                await asyncio.sleep(1.0)

    async def _status_loop(self) -> None:
        tick = 0
        interval = max(self.s.poll_interval, 0.5)
        while True:
            self.heartbeats.beat("status")
            tick += 1
            try:
                info = await self.backend.launch_agent(self.agent_id)
                if info.get("stopPolling"):
                    self.stop_polling.set()
                    return
            except BackendError as exc:
                self.metrics.inc("backend_errors_total", "Failed W&B API calls", operation="LaunchAgent")
                self.log.warning("LaunchAgent query failed: %s (will retry)", exc)
            busy = bool(self.pipeline.in_flight) or bool(self.active_workloads()) or self.sweeps.running() > 0
            if tick % 2 == 0:
                try:
                    await self.backend.update_launch_agent(self.agent_id, "RUNNING" if busy else "POLLING")
                except BackendError as exc:
                    self.log.warning("updateLaunchAgent failed: %s (will retry)", exc)
            self._publish_gauges()
            await asyncio.sleep(interval)

    async def _sweeps_loop(self) -> None:
        """Resume the sweep schedulers whose records exist: once this process may pop (it leads, its
        view of the cluster is complete), then every resync interval (a record another replica left).
        Each scheduler runs as a task of its own."""
        next_at = 0.0
        while True:
            self.heartbeats.beat("sweeps")
            now = time.monotonic()
            if self.may_pop() and now >= next_at:
                try:
                    await self.sweeps.adopt()
                    next_at = now + self.s.resync_interval
                except Exception as exc:  # the API server away: try again soon
                    self.log.warning("cannot resume sweep schedulers yet: %s", exc)
                    next_at = now + 5.0
            if self.stopping.is_set():  # shutting down: a wait would return at once
                await asyncio.sleep(5.0)
            else:
                await self.wait_change(timeout=5.0, stop_only=True)

    def _publish_gauges(self) -> None:
        self.metrics.clear("running")
        counts: dict[str, int] = dict.fromkeys(self.s.queues, 0)
        for _, obj in self.active_workloads():
            queue = ledger.annotations(obj).get(ANN_QUEUE, "")
            counts[queue] = counts.get(queue, 0) + 1
        for q, n in counts.items():
            self.metrics.set("running", "Workloads launched and not finished, by queue", n, queue=q)
