"""The agent's sweep schedulers: what the controller calls for scheduler items and sweep runs.

The default scheduler runs inside the agent, one asyncio task per sweep: it needs no image, no
pod, no ``wandb`` package and nothing the agent's RBAC does not already cover but one ConfigMap per
sweep (its `sweep_ledger`). A scheduler item is recorded (the ConfigMap is created before the
ack, so a second pop of the same item finds it), acked with the sweep id as its run, and started;
on start the agent re-adopts every scheduler whose ConfigMap exists. Schedulers run only while the
agent loop runs, that is only on the leader; on SIGTERM or a lost lease they stop where they are
and the next leader resumes them.

A scheduler that is itself a job (``scheduler.job``) is an ordinary workload; when it fails, the
sweep is set ``CANCELED`` (`cancel_sweep`). A sweep run is launched only while its sweep is
``RUNNING`` or ``PAUSED`` (`refusal`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
from typing import Any

from agent.backend.jobs import JobResolver
from agent.backend.operations import Backend, PoppedItem
from agent.backend.sweep_ledger import Ledger
from agent.backend.sweep_operations import SweepApi
from agent.backend.sweep_scheduler import SweepScheduler
from agent.backend.sweep_spec import SchedulerSpec, SweepSpecError, parse_scheduler
from agent.backend.transport import BackendError
from agent.config import AgentSettings
from agent.kube.client import Kube, KubeError
from agent.manifest import (
    ANN_ENTITY,
    ANN_ITEM_ID,
    ANN_PROJECT,
    ANN_QUEUE,
    ANN_RUN_ID,
    LABEL_ITEM,
    LABEL_QUEUE,
    LABEL_ROLE,
    LABEL_RUN_ID,
    dns_name,
    identity_labels,
    item_label,
    label_value,
    short_hash,
)
from agent.metrics import Metrics

LIVE_SWEEP_STATES = ("RUNNING", "PAUSED")
RBAC_HINT = "grant configmaps create, get, list, patch and delete in the agent's namespace (the chart does)"


class SweepSchedulers:
    def __init__(self, settings: AgentSettings, backend: Backend, kube: Kube, metrics: Metrics,
                 log: logging.Logger, jobs: JobResolver | None = None) -> None:
        self.s = settings
        self.jobs = jobs
        self.backend = backend
        self.api = SweepApi(backend.client)
        self.kube = kube
        self.metrics = metrics
        self.log = log
        self._stop = asyncio.Event()
        self._tasks: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        self.schedulers: dict[tuple[str, str, str], SweepScheduler] = {}
        self._adopting = asyncio.Lock()
        self._adopted = False

    def running(self) -> int:
        return len(self._tasks)

    # ---------------------------------------------------------------- starting

    async def adopt(self) -> None:
        """Resume every scheduler whose record exists (raises when the API server cannot be read)."""
        async with self._adopting:
            await self._adopt()
            self._adopted = True

    async def adopt_once(self) -> None:
        """Before the first scheduler item is taken: the recorded schedulers are resumed first, so they
        count against max_schedulers and an item of a recorded sweep finds its scheduler running."""
        if not self._adopted:
            await self.adopt()

    async def _adopt(self) -> None:
        selector = ",".join(f"{k}={v}" for k, v in identity_labels(self.s.manifest_settings()).items())
        try:
            ledgers = await Ledger.list(self.kube, self.s.namespace, selector)
        except KubeError as exc:
            if exc.status not in (401, 403):
                raise
            self.log.warning("cannot list ConfigMaps in %s (%s): sweep schedulers cannot run; %s",
                             self.s.namespace, exc.status, RBAC_HINT)
            return
        for ledger in ledgers:
            record = ledger.scheduler
            try:
                sched = parse_scheduler(record.get("spec") or {}, item_id=str(record.get("item") or ""),
                                        queue=str(record.get("queue") or ""))
            except SweepSpecError as exc:
                self.log.warning("scheduler record %s cannot be resumed (%s); removing it", ledger.name, exc)
                await ledger.delete()
                continue
            if sched.key not in self._tasks:
                self.log.info("re-adopted the scheduler of sweep %s (item %s, %d run(s) in flight)",
                              "/".join(sched.key), sched.item_id, len(ledger.runs))
                self.metrics.inc("items_adopted_total", "Workloads re-adopted at start", queue=sched.queue)
                self._start(sched, ledger)

    async def accept(self, item: PoppedItem) -> None:
        """A default-scheduler item: record it, ack it, start its scheduler (or fail it with the reason)."""
        try:
            sched = parse_scheduler(item.run_spec, item_id=item.item_id, queue=item.queue)
        except SweepSpecError as exc:
            await self._fail(item.item_id, item.queue, str(exc))
            return
        running = self.schedulers.get(sched.key)
        if running is not None and running.spec.item_id != item.item_id:
            await self._fail(item.item_id, item.queue, f"the scheduler of sweep {'/'.join(sched.key)} is running "
                                                       f"already (item {running.spec.item_id})")
            return
        if running is not None:
            return
        spec = copy.deepcopy(item.run_spec)
        spec.pop("_wandb_api_key", None)
        record = {"item": item.item_id, "queue": item.queue, "spec": spec}
        try:
            ledger, created = await Ledger.open(self.kube, self.s.namespace, self._record_name(sched),
                                                self._labels(sched), self._annotations(sched), record)
            if not created and ledger.scheduler.get("item") != item.item_id:
                await ledger.set_scheduler(record)  # the sweep resumed from W&B with a new scheduler item
        except KubeError as exc:
            if exc.status in (401, 403):
                await self._fail(item.item_id, item.queue, f"{exc.status}: this agent may not create ConfigMaps in "
                                 f"{self.s.namespace}, where sweep schedulers keep their records; {RBAC_HINT}")
            else:
                self.log.warning("cannot record the scheduler of sweep %s: %s; the item will be re-queued",
                                 "/".join(sched.key), exc)
            return
        except Exception as exc:  # the API server unreachable: W&B hands the item out again
            self.log.warning("cannot record the scheduler of sweep %s: %s; the item will be re-queued",
                             "/".join(sched.key), exc)
            return
        try:
            if not await self.backend.ack(item.item_id, sched.sweep_id):
                self.log.warning("ack of scheduler item %s was refused (acked elsewhere?)", item.item_id)
        except BackendError as exc:
            self.log.warning("ack of scheduler item %s failed: %s", item.item_id, exc)
        self.metrics.inc("items_launched_total", "Workloads created", queue=item.queue)
        self.log.info("started the scheduler of sweep %s for item %s (%d worker(s))", "/".join(sched.key),
                      item.item_id, sched.num_workers)
        self._start(sched, ledger)

    def _record_name(self, sched: SchedulerSpec) -> str:
        suffix = short_hash(*sched.key)
        return f"{dns_name(f'sweep-{sched.sweep_id}', max_len=56)}-{suffix}"

    def _labels(self, sched: SchedulerSpec) -> dict[str, str]:
        return {**identity_labels(self.s.manifest_settings()), LABEL_ROLE: "scheduler",
                LABEL_QUEUE: label_value(sched.queue), LABEL_ITEM: item_label(sched.item_id),
                LABEL_RUN_ID: label_value(sched.sweep_id)}

    @staticmethod
    def _annotations(sched: SchedulerSpec) -> dict[str, str]:
        return {ANN_ITEM_ID: sched.item_id, ANN_QUEUE: sched.queue, ANN_ENTITY: sched.entity,
                ANN_PROJECT: sched.project, ANN_RUN_ID: sched.sweep_id}

    def _start(self, sched: SchedulerSpec, ledger: Ledger) -> None:
        scheduler = SweepScheduler(
            sched, self.api, ledger, interval=self.s.sweep_interval, hostname=socket.gethostname(),
            served=self.s.queues, log=self.log, metrics=self.metrics,
            fail_item=lambda item_id, message: self._fail(item_id, sched.queue, message), jobs=self.jobs)
        self.schedulers[sched.key] = scheduler
        self._tasks[sched.key] = asyncio.create_task(self._drive(scheduler), name=f"sweep-{sched.sweep_id}")
        self._gauge()

    async def _drive(self, scheduler: SweepScheduler) -> None:
        key = scheduler.spec.key
        try:
            outcome = await scheduler.run(self._stop)
            self.metrics.inc("sweep_schedulers_ended_total", "Sweep schedulers that ended, by outcome",
                             outcome=outcome.state)
        except Exception:
            self.log.exception("the scheduler of sweep %s stopped unexpectedly", "/".join(key))
        finally:
            self._tasks.pop(key, None)
            self.schedulers.pop(key, None)
            self._gauge()

    def _gauge(self) -> None:
        self.metrics.set("sweep_schedulers", "Sweep schedulers running in this agent", len(self._tasks))

    async def _fail(self, item_id: str, queue: str, message: str) -> None:
        self.metrics.inc("items_failed_total", "Run-queue items failed, by stage", queue=queue, stage="agent")
        self.log.error("item %s failed (agent): %s", item_id, message)
        try:
            await self.backend.fail(item_id, message, "agent")
        except BackendError as exc:
            self.log.warning("failRunQueueItem for %s failed: %s", item_id, exc)

    # ---------------------------------------------------------------- sweep runs and scheduler jobs

    async def refusal(self, spec: dict[str, Any]) -> str | None:
        """Why a run of a sweep must not be launched (its sweep is over), like the official agent."""
        sweep_id = spec.get("sweep_id")
        if not sweep_id or not isinstance(sweep_id, str):
            return None
        entity, project = str(spec.get("entity") or ""), str(spec.get("project") or "")
        try:
            state = await self.api.sweep_state(entity, project, sweep_id)
        except BackendError as exc:
            if exc.retryable:
                self.log.warning("cannot read the state of sweep %s: %s; launching its run", sweep_id, exc)
                return None
            state = None
        if state in LIVE_SWEEP_STATES:
            return None
        return (f"the run belongs to sweep {entity}/{project}/{sweep_id}, which is "
                f"{state.lower() if state else 'not found'}; its runs are not launched any more")

    async def cancel_sweep(self, entity: str, project: str, sweep_id: str, reason: str) -> None:
        """A scheduler that failed sets its sweep CANCELED (the official agent's rule)."""
        try:
            sweep = await self.api.sweep(entity, project, sweep_id)
            if sweep is None or sweep.get("state") not in ("PENDING", *LIVE_SWEEP_STATES):
                return
            await self.api.set_sweep_state(str(sweep["id"]), entity, project, "CANCELED")
            self.log.error("sweep %s/%s/%s canceled: its scheduler failed: %s", entity, project, sweep_id, reason)
        except BackendError as exc:
            self.log.warning("cannot cancel sweep %s after its scheduler failed: %s", sweep_id, exc)

    async def aclose(self, *, at_once: bool = False) -> None:
        """Stop every scheduler where it is (each resumes on the next start); `at_once` (the lease
        is lost) cancels them in the middle of whatever they do."""
        self._stop.set()
        tasks = list(self._tasks.values())
        if at_once:
            for task in tasks:
                task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
