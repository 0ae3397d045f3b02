"""One sweep's scheduler, run inside the agent: the loop of W&B's default launch scheduler.

It registers ``num_workers`` sweep agents, and every interval: reads the sweep's state, checks
the runs it pushed (a run has ended when its state is terminal, when its queue item failed, or
when W&B no longer knows it), and asks W&B for a parameter set for each worker without a live run
(``agentHeartbeat``), pushing each as a run of the sweep's job or image (`sweep_spec.run_spec`).

It ends when the sweep does: ``FINISHED`` (stopped from W&B, or every run done: completed),
``PAUSED`` (no new runs; ends once the running ones have), ``CANCELED``/``STOPPED`` or an
``exit`` command (the running runs are stopped), ``run_cap`` runs launched and ended (completed,
the sweep is set ``FINISHED``), its own run stopped from W&B (as cancelled), or a failure
(the sweep is set ``CANCELED`` and the item failed with the reason). Transient W&B errors are
retried on the next tick; a W&B error that repeats for `FAIL_AFTER` ticks is a failure.

Exactly once: see `sweep_ledger` — a parameter set is recorded before its push, the push is sent
once, and a set whose push is unconfirmed after a restart is settled against the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml

from agent.backend.jobs import JobError, JobResolver
from agent.backend.sweep_ledger import Ledger, PushedRun
from agent.backend.sweep_operations import SweepApi
from agent.backend.sweep_spec import SchedulerSpec, SweepSpecError, run_spec, sweep_problem
from agent.backend.transport import BackendError
from agent.kube.client import KubeError
from agent.metrics import Metrics

COMPLETED, PAUSED, CANCELLED, FAILED, INTERRUPTED = "completed", "paused", "cancelled", "failed", "interrupted"
DEAD_RUN_STATES = frozenset({"crashed", "failed", "killed", "finished", "preempted"})
CANCEL_STATES = frozenset({"CANCELED", "CANCELLED", "STOPPED", "CRASHED"})
FAIL_AFTER = 3
FILE_STREAM_INTERVAL = 15.0


class SchedulerFailure(Exception):
    """The sweep cannot go on; the message goes on the scheduler item."""


@dataclass(frozen=True)
class Outcome:
    state: str
    message: str = ""


class SweepScheduler:
    def __init__(self, spec: SchedulerSpec, api: SweepApi, ledger: Ledger, *, interval: float, hostname: str,
                 served: tuple[str, ...], log: logging.Logger, metrics: Metrics,
                 fail_item: Callable[[str, str], Awaitable[None]], jobs: JobResolver | None = None) -> None:
        self.spec = spec
        self.api = api
        self.ledger = ledger
        self.interval = spec.polling_sleep or interval
        self.hostname = hostname
        self.served = served
        self.log = log
        self.metrics = metrics
        self._fail_item = fail_item
        self.jobs = jobs
        self.config: dict[str, Any] = {}
        self.sweep_object_id = ""
        self.sweep_state = ""
        self.launched = 0
        self.workers: list[str] = []
        self.state = "starting"
        self._errors = 0
        self._last_error = ""
        self._streamed_at = 0.0
        self._waiting_logged = False

    @property
    def name(self) -> str:
        return "/".join(self.spec.key)

    # ---------------------------------------------------------------- the loop

    async def run(self, stop: asyncio.Event) -> Outcome:
        try:
            outcome = await self._run(stop)
        except SchedulerFailure as exc:
            outcome = Outcome(FAILED, str(exc))
        except SweepSpecError as exc:
            outcome = Outcome(FAILED, str(exc))
        if outcome.state != INTERRUPTED:
            await self._finish(outcome)
        return outcome

    async def _run(self, stop: asyncio.Event) -> Outcome:
        started = await self._retrying(stop, self._start)
        if started is not None:
            return started
        self.state = "running"
        flushing = False
        while not stop.is_set():
            outcome = await self._tick(flushing)
            if isinstance(outcome, Outcome):
                return outcome
            flushing = outcome
            await _sleep(stop, self.interval)
        return Outcome(INTERRUPTED)

    async def _retrying(self, stop: asyncio.Event, step: Callable[[], Awaitable[Outcome | None]]) -> Outcome | None:
        delay = 1.0
        while True:
            try:
                return await step()
            except BackendError as exc:
                if not exc.retryable:
                    raise SchedulerFailure(f"starting the scheduler failed: {exc}") from None
                self.log.warning("sweep %s: %s (retrying in %.0fs)", self.name, exc, delay)
            if stop.is_set():
                return Outcome(INTERRUPTED)
            await _sleep(stop, delay)
            delay = min(delay * 2, 30.0)

    async def _start(self) -> Outcome | None:
        s = self.spec
        sweep = await self.api.sweep(s.entity, s.project, s.sweep_id)
        if sweep is None:
            raise SchedulerFailure(f"sweep {self.name} not found")
        self.sweep_object_id = str(sweep["id"])
        self.sweep_state = str(sweep.get("state") or "")
        try:
            config = yaml.safe_load(sweep.get("config") or "")
        except yaml.YAMLError:
            config = None
        if not isinstance(config, dict):
            raise SchedulerFailure(f"sweep {self.name}: its config is not a YAML mapping")
        self.config = config
        problem = sweep_problem(config, s, self.served)
        if problem:
            raise SchedulerFailure(problem)
        job = s.job or config.get("job")
        if job and self.jobs is not None:  # like the official scheduler: the job must exist to start
            try:
                await self.jobs.resolve(job, s.entity, s.project)
            except JobError as exc:
                raise SchedulerFailure(f"the sweep's job cannot be launched: {exc}") from None
        if self.sweep_state in ("FINISHED", *CANCEL_STATES):
            self.log.info("sweep %s is %s already; nothing to schedule", self.name, self.sweep_state)
            return Outcome(COMPLETED if self.sweep_state == "FINISHED" else CANCELLED)
        self.launched = sum(1 for r in sweep.get("runs") or []
                            if not (r.get("state") in ("killed", "crashed") and not r.get("summaryMetrics")))
        await self.api.upsert_run(s.entity, s.project, s.sweep_id, f"Scheduler.{s.sweep_id}", self._run_config())
        if not self.workers:
            for i in range(s.num_workers):
                self.workers.append(await self.api.register(f"{self.hostname}-{i}", s.entity, s.project, s.sweep_id))
        self.log.info("sweep %s: scheduling %s with %d worker(s), %d run(s) launched before, %d in flight",
                      self.name, config.get("method"), len(self.workers), self.launched, len(self.ledger.runs))
        return None

    def _run_config(self) -> dict[str, Any]:
        s = self.spec
        config: dict[str, Any] = {"queue": s.run_queue}
        for key, value in (("author", s.author), ("job", s.job), ("image_uri", s.image_uri)):
            if value:
                config[key] = value
        config.update({k: v for k, v in s.run_config.items() if k in ("scheduler", "settings", "launch")})
        return config

    async def _tick(self, flushing: bool) -> Outcome | bool:
        """One pass; an Outcome ends the scheduler, a bool says whether it is flushing."""
        try:
            outcome = await self._check(flushing)
            self._errors = 0
            return outcome
        except BackendError as exc:
            self.metrics.inc("sweep_scheduler_errors_total", "W&B calls of sweep schedulers that failed")
            self.log.warning("sweep %s: %s (will retry)", self.name, exc)
            if exc.retryable:
                return flushing
            self._errors = self._errors + 1 if str(exc) == self._last_error else 1
            self._last_error = str(exc)
            if self._errors >= FAIL_AFTER:
                raise SchedulerFailure(f"W&B refused the scheduler {FAIL_AFTER} times in a row: {exc}") from None
            return flushing
        except (SchedulerFailure, SweepSpecError):
            raise
        except KubeError as exc:
            if exc.status == 404:
                raise SchedulerFailure(f"the scheduler's record {self.ledger.namespace}/{self.ledger.name} was "
                                       "deleted") from None
            self.log.warning("sweep %s: writing its record failed: %s (will retry)", self.name, exc)
            return flushing
        except Exception as exc:  # the API server unreachable: the next pass tries again
            self.log.warning("sweep %s: %s: %s (will retry)", self.name, type(exc).__name__, exc)
            return flushing

    async def _check(self, flushing: bool) -> Outcome | bool:
        s = self.spec
        if await self._own_run_stopped():
            return Outcome(CANCELLED, "the scheduler's run was stopped from W&B")
        self.sweep_state = await self.api.sweep_state(s.entity, s.project, s.sweep_id) or self.sweep_state
        if self.sweep_state == "FINISHED":
            return Outcome(COMPLETED)
        if self.sweep_state in CANCEL_STATES:
            return Outcome(CANCELLED, f"the sweep was {self.sweep_state.lower()}")
        if self.sweep_state == "PAUSED":
            flushing = True
        await self._update_runs()
        await self._settle_doubts()
        if flushing:
            if not self.ledger.runs:
                return Outcome(COMPLETED if self._at_cap() else PAUSED)
            return True
        for worker in self._free_workers():
            if self._at_cap():
                self.log.info("sweep %s: run_cap %s reached; waiting for its runs to end", self.name,
                              self.config.get("run_cap"))
                return True
            commands = await self.api.heartbeat(self.workers[worker], {})
            for command in commands:
                kind = command.get("type")
                if kind in ("exit", "stop"):
                    return Outcome(CANCELLED, f"W&B sent {kind}")
                if kind not in ("run", "resume"):
                    raise SchedulerFailure(f"W&B sent a sweep command this scheduler does not know: {kind!r}")
                if await self._launch(worker, command):
                    break
        return False

    def _at_cap(self) -> bool:
        cap = self.config.get("run_cap")
        return isinstance(cap, int) and cap > 0 and self.launched >= cap

    def _free_workers(self) -> list[int]:
        busy = {r.worker for r in self.ledger.runs.values()}
        return [i for i in range(len(self.workers)) if i not in busy]

    async def _own_run_stopped(self) -> bool:
        now = time.monotonic()
        if now - self._streamed_at < FILE_STREAM_INTERVAL:
            return False
        self._streamed_at = now
        s = self.spec
        answer = await self.api.file_stream(s.entity, s.project, s.sweep_id, {})
        return bool(answer.get("stopped"))

    # ---------------------------------------------------------------- runs

    async def _launch(self, worker: int, command: dict[str, Any]) -> bool:
        """Record, push and confirm one parameter set; False when it was a duplicate."""
        run_id = command.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise SchedulerFailure(f"W&B sent a run command without a run id: {command}")
        if run_id in self.ledger.runs:
            return False
        args = command.get("args") or {}
        if not isinstance(args, dict):
            raise SchedulerFailure(f"W&B sent run {run_id} with arguments that are not an object")
        run = PushedRun(run_id, args, worker)
        await self.ledger.record(run)
        await self._push(run)
        return True

    async def _push(self, run: PushedRun) -> None:
        s = self.spec
        spec, priority, template_variables = run_spec(s, self.config, run.run_id, run.args)
        try:
            run.item_id = await self.api.push(s.entity, s.run_queue, spec, priority, template_variables,
                                              s.run_queue_project)
        except BackendError as exc:
            if exc.retryable:  # maybe applied (or not sent): settled against the queue later
                self.log.warning("sweep %s: push of run %s unconfirmed (%s)", self.name, run.run_id, exc)
                return
            await self.ledger.forget(run.run_id)
            raise SchedulerFailure(f"pushing run {run.run_id} to queue {s.run_queue} failed: {exc}") from None
        self.launched += 1
        await self.ledger.record(run)
        self.metrics.inc("sweep_runs_pushed_total", "Sweep runs pushed by the agent's schedulers", queue=s.run_queue)
        self.log.info("sweep %s: pushed run %s (%s) as item %s", self.name, run.run_id,
                      ", ".join(f"{k}={(v or {}).get('value') if isinstance(v, dict) else v}"
                                for k, v in run.args.items()), run.item_id)

    async def _update_runs(self) -> None:
        s = self.spec
        for run in list(self.ledger.runs.values()):
            if run.item_id is None:
                continue
            state = await self.api.run_state(s.entity, s.project, run.run_id)
            ended = False
            if state is None:
                run.misses += 1
                ended = run.misses >= 2
            elif state in DEAD_RUN_STATES:
                ended = True
            elif state == "pending":
                ended = await self.api.item_state(s.entity, s.run_queue, run.item_id, s.run_queue_project) == "FAILED"
            if ended:
                self.log.info("sweep %s: run %s ended (%s)", self.name, run.run_id, state or "unknown to W&B")
                await self.ledger.forget(run.run_id)

    async def _settle_doubts(self) -> None:
        """Runs recorded but not confirmed pushed: find their item, or push them once the queue
        holds no item that could be theirs."""
        doubts = [r for r in self.ledger.runs.values() if r.item_id is None]
        if not doubts:
            return
        s = self.spec
        items = await self.api.queue_items(s.entity, s.run_queue, s.run_queue_project)
        by_run = {i.get("associatedRunId"): str(i["id"]) for i in items if i.get("associatedRunId")}
        known = {r.item_id for r in self.ledger.runs.values() if r.item_id}
        unknown_waiting = [i for i in items if i.get("state") in ("PENDING", "CLAIMED") and i["id"] not in known]
        for run in doubts:
            if run.run_id in by_run:
                run.item_id = by_run[run.run_id]
                self.launched += 1
                await self.ledger.record(run)
                self.log.info("sweep %s: run %s was pushed before the restart (item %s)", self.name, run.run_id,
                              run.item_id)
            elif not unknown_waiting:
                self.log.info("sweep %s: run %s was never pushed; pushing it now", self.name, run.run_id)
                await self._push(run)
            elif not self._waiting_logged:
                self._waiting_logged = True
                self.log.info("sweep %s: waiting for %d queued item(s) to be taken before deciding whether "
                              "run %s was pushed", self.name, len(unknown_waiting), run.run_id)

    # ---------------------------------------------------------------- the end

    async def _finish(self, outcome: Outcome) -> None:
        s = self.spec
        self.state = outcome.state
        wanted = {COMPLETED: "FINISHED", PAUSED: "PAUSED", CANCELLED: "CANCELED", FAILED: "CANCELED"}[outcome.state]
        level = logging.ERROR if outcome.state == FAILED else logging.INFO
        self.log.log(level, "sweep %s: scheduler %s%s", self.name, outcome.state,
                     f": {outcome.message}" if outcome.message else "")
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        if self.sweep_object_id and self.sweep_state not in ("FINISHED", *CANCEL_STATES) and \
                self.sweep_state != wanted:
            steps.append(("setting the sweep state", lambda: self.api.set_sweep_state(
                self.sweep_object_id, s.entity, s.project, wanted)))
        if outcome.state in (CANCELLED, FAILED):
            for run in list(self.ledger.runs.values()):
                steps.append((f"stopping run {run.run_id}",
                              lambda r=run.run_id: self.api.stop_run(s.entity, s.project, r)))  # type: ignore[misc]
        if outcome.state == FAILED:
            steps.append(("failing the scheduler item", lambda: self._fail_item(
                s.item_id, f"the sweep scheduler failed: {outcome.message}")))
        steps.append(("finishing the scheduler's run", lambda: self.api.file_stream(
            s.entity, s.project, s.sweep_id, {"complete": True, "exitcode": 1 if outcome.state == FAILED else 0})))
        steps.append(("removing the scheduler record", self.ledger.delete))
        for what, step in steps:
            for attempt in range(3):
                try:
                    await step()
                    break
                except Exception as exc:
                    self.log.warning("sweep %s: %s failed: %s%s", self.name, what, exc,
                                     " (retrying)" if attempt < 2 else "")
                    await asyncio.sleep(0.5 * (attempt + 1))


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
