"""The agent loop: register, re-adopt, pop, launch, watch, report, stop, shut down.

Exactly-once: objects are named per run-queue item, created before the ack, and `409` means the
item was launched already. On start the agent lists its labelled objects and re-adopts them, and
reports the runs that ended while it was down. A failing backend call is logged and retried; only
bad configuration or a refused registration ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import socket
import string
import time
from dataclasses import dataclass, field
from typing import Any

from agent.backend.jobs import DirectUrls, JobError, JobResolver, builder_type, prepare_job
from agent.backend.operations import Backend, PoppedItem
from agent.backend.transport import BackendError
from agent.config import AgentSettings
from agent.controller.status import (
    FAILED,
    FINISHED,
    RUNNING,
    STARTING,
    STOPPED,
    TERMINAL,
    event_warnings,
    pod_running,
    pod_warnings,
    workload_status,
)
from agent.kube.client import EVENTS, JOBS, PODS, Kube, KubeError, ResourceType
from agent.kube.watch import Monitor
from agent.manifest import (
    ANN_ENTITY,
    ANN_ITEM_ID,
    ANN_PROJECT,
    ANN_QUEUE,
    ANN_RUN_ID,
    LABEL_ITEM,
    LABEL_ROLE,
    ManifestError,
    build_workload,
    selector,
)
from agent.metrics import Metrics
from agent.source.git import git_checker

SCHEDULER_URI = "placeholder-uri-scheduler"
STOP_CHECK_INTERVAL = 10.0
EVENTS_CHECK_INTERVAL = 5.0
UNSEEN_GRACE = 30.0


async def wait_any(*events: asyncio.Event, timeout: float) -> None:
    """Sleep until one of the events is set or the timeout passes."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class FatalError(Exception):
    """The agent cannot run (bad queue names, entity not accessible): exit 2."""


@dataclass
class Tracked:
    item_id: str
    item_label: str
    queue: str
    run_id: str
    entity: str
    project: str
    rt: ResourceType
    namespace: str
    name: str
    launched_at: float
    scheduler: bool = False
    adopted: bool = False
    state: str = STARTING
    warnings: set[str] = field(default_factory=set)
    last_warning: str = ""
    stop_seen_at: float | None = None
    stop_checked_at: float = 0.0
    events_checked_at: float = 0.0
    deleting: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rt.key, self.namespace, self.name)


def derived_run_id(item_id: str) -> str:
    """A run id for specs without one, stable per item (8 base-36 chars, like W&B's)."""
    n = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")
    alphabet = string.digits + string.ascii_lowercase
    out = ""
    for _ in range(8):
        n, r = divmod(n, 36)
        out += alphabet[r]
    return out


class Agent:
    def __init__(self, settings: AgentSettings, backend: Backend, kube: Kube, metrics: Metrics,
                 log: logging.Logger) -> None:
        self.s = settings
        self.backend = backend
        self.kube = kube
        self.metrics = metrics
        self.log = log
        self.agent_id = ""
        self.agent_name = ""
        self.queue_order = list(settings.queues)
        self.tracked: dict[str, Tracked] = {}
        self.selector = selector(settings.manifest_settings())
        self.monitor = Monitor(kube, self.selector, log=log, on_event=self._wake_up)
        if kube.observe is None:
            kube.observe = lambda verb, seconds: metrics.observe(
                "kube_request_seconds", "Kubernetes API latency", seconds, verb=verb)
        self.downloads = DirectUrls()
        self.jobs = JobResolver(backend.client, self.downloads, max_code_bytes=settings.max_code_bytes,
                                git_check=git_checker(settings.git_credentials_file, settings.git_ca_file or True))
        self.ready = False
        self.last_loop = time.monotonic()
        self._wake = asyncio.Event()
        self._ticks = 0

    def _wake_up(self) -> None:
        self._wake.set()

    # ---------------------------------------------------------------- startup

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
            [by_name[q] for q in self.s.queues], socket.gethostname(), dict(self.s.agent_config),
            self.s.version)
        if await self.backend.entity_is_team():
            self.log.info("entity %s is a team entity", self.s.entity)
        info = await self.backend.launch_agent(self.agent_id)
        self.agent_name = str(info.get("name") or self.agent_id)
        self.log.info("registered as launch agent %s (id %s) polling %s", self.agent_name, self.agent_id,
                      ", ".join(self.s.queues))

    async def adopt(self) -> bool:
        """List this agent's objects in every target namespace and track them. False when the
        API server could not be read; the loop retries before it pops anything."""
        try:
            await self._adopt()
            return True
        except Exception as exc:
            self.log.warning("cannot list this agent's workloads yet: %s (retrying before popping)", exc)
            return False

    async def _adopt(self) -> None:
        namespaces = self.s.manifest_settings().targets()
        kinds: dict[str, ResourceType] = {JOBS.key: JOBS}
        for spec in self.s.workload_kinds:
            api_version, _, kind = spec.rpartition("/")
            try:
                rt = await self.kube.resolve(api_version, kind)
                kinds[rt.key] = rt
            except KubeError as exc:
                self.log.warning("cannot watch %s: %s", spec, exc)
        for ns in namespaces:
            try:
                pods, _ = await self.kube.list(PODS, ns, self.selector)
            except KubeError as exc:
                if exc.status >= 500:
                    raise
                self.log.warning("cannot list pods in %s: %s", ns, exc)
                continue
            for pod in pods:
                for owner in pod["metadata"].get("ownerReferences") or []:
                    if owner.get("apiVersion", "").startswith("batch/") and owner.get("kind") == "Job":
                        continue
                    try:
                        rt = await self.kube.resolve(owner["apiVersion"], owner["kind"])
                        kinds.setdefault(rt.key, rt)
                    except KubeError:
                        continue
        for ns in namespaces:
            for rt in kinds.values():
                try:
                    objs, _ = await self.kube.list(rt, ns, f"{self.selector},{LABEL_ROLE}=workload")
                except KubeError as exc:
                    if exc.status >= 500:
                        raise
                    self.log.warning("cannot list %s in %s: %s", rt.key, ns, exc)
                    continue
                for obj in objs:
                    tracked = self._from_object(rt, obj)
                    if tracked and tracked.item_id not in self.tracked:
                        self.tracked[tracked.item_id] = tracked
                        self.monitor.ensure(rt, ns)
                        self.monitor.ensure(PODS, ns)
                        self.metrics.inc("items_adopted_total", "Workloads re-adopted at start", queue=tracked.queue)
                        self.log.info("re-adopted %s %s/%s for item %s (run %s)", rt.kind, ns, tracked.name,
                                      tracked.item_id, tracked.run_id)

    def _from_object(self, rt: ResourceType, obj: dict[str, Any]) -> Tracked | None:
        meta = obj.get("metadata") or {}
        ann = meta.get("annotations") or {}
        item_id = ann.get(ANN_ITEM_ID)
        if not item_id:
            return None
        return Tracked(item_id=item_id, item_label=(meta.get("labels") or {}).get(LABEL_ITEM, ""),
                       queue=ann.get(ANN_QUEUE, ""), run_id=ann.get(ANN_RUN_ID, ""),
                       entity=ann.get(ANN_ENTITY, ""), project=ann.get(ANN_PROJECT, ""), rt=rt,
                       namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                       launched_at=time.monotonic(), adopted=True)

    # ---------------------------------------------------------------- main loop

    async def run(self, stop: asyncio.Event, *, leader_lost: asyncio.Event | None = None) -> None:
        """Poll until stop (SIGTERM) or the server asks the agent to stop polling."""
        delay = 1.0
        while True:
            try:
                await self.register()
                break
            except BackendError as exc:
                if not exc.retryable or stop.is_set():
                    raise
                self.log.warning("registering with W&B failed: %s; retrying in %.0fs", exc, delay)
                await wait_any(stop, timeout=delay)
                delay = min(delay * 2, 30.0)
        adopted = await self.adopt()
        self.ready = True
        next_poll = 0.0
        while not stop.is_set() and not (leader_lost and leader_lost.is_set()):
            self.last_loop = time.monotonic()
            try:
                await self.reconcile()
            except Exception as exc:  # never fatal: logged, retried on the next pass
                self.log.exception("checking running workloads failed: %s", exc)
            now = time.monotonic()
            if not adopted and now >= next_poll:
                adopted = await self.adopt()
                if not adopted:
                    next_poll = now + self.s.poll_interval
            if adopted and now >= next_poll:
                self._ticks += 1
                if await self._stop_requested():
                    self.log.info("W&B asked this agent to stop polling")
                    await self._status("KILLED")
                    return
                got = await self.poll_once() if self._has_capacity() else False
                if self._ticks % 3 == 0:
                    await self._status("RUNNING" if self._active() else "POLLING")
                next_poll = now if got else now + self.s.poll_interval
            self._publish_gauges()
            self._wake.clear()
            timeout = 1.0 if self._active() else max(0.0, min(next_poll - time.monotonic(), 5.0))
            await wait_any(stop, self._wake, timeout=timeout)
        self.log.info("stopping: no new items are popped; running workloads keep running")

    async def _stop_requested(self) -> bool:
        if self._ticks % 3 != 1:
            return False
        try:
            info = await self.backend.launch_agent(self.agent_id)
        except BackendError as exc:
            self.log.warning("LaunchAgent query failed: %s (will retry)", exc)
            self.metrics.inc("backend_errors_total", "Failed W&B API calls", operation="LaunchAgent")
            return False
        return bool(info.get("stopPolling"))

    async def _status(self, status: str) -> None:
        try:
            await self.backend.update_launch_agent(self.agent_id, status)
        except BackendError as exc:
            self.log.warning("updateLaunchAgent(%s) failed: %s (will retry)", status, exc)

    def _active(self) -> list[Tracked]:
        return [t for t in self.tracked.values() if t.state not in TERMINAL]

    def _has_capacity(self) -> bool:
        jobs = sum(1 for t in self._active() if not t.scheduler)
        return jobs < self.s.max_jobs

    def _publish_gauges(self) -> None:
        self.metrics.clear("running")
        counts: dict[str, int] = {q: 0 for q in self.s.queues}
        for t in self._active():
            counts[t.queue] = counts.get(t.queue, 0) + 1
        for q, n in counts.items():
            self.metrics.set("running", "Workloads launched and not finished, by queue", n, queue=q)

    async def poll_once(self) -> bool:
        """Pop from the queues in round-robin order; launch the first item found."""
        for queue in list(self.queue_order):
            try:
                item = await self.backend.pop(queue, self.agent_id)
            except BackendError as exc:
                self.log.warning("pop from %s failed: %s (will retry)", queue, exc)
                self.metrics.inc("backend_errors_total", "Failed W&B API calls", operation="popFromRunQueue")
                continue
            if item is None:
                continue
            self.queue_order.remove(queue)
            self.queue_order.append(queue)
            self.metrics.inc("items_popped_total", "Run-queue items popped", queue=queue)
            try:
                await self.launch(item)
            except Exception as exc:  # a spec nobody foresaw must not stop the agent
                self.log.exception("launching item %s failed", item.item_id)
                await self._fail(item.item_id, queue, f"the agent could not launch this item: "
                                 f"{type(exc).__name__}: {exc}", "agent")
            return True
        return False

    # ---------------------------------------------------------------- launching

    async def _fail(self, item_id: str, queue: str, message: str, stage: str) -> None:
        self.metrics.inc("items_failed_total", "Run-queue items failed, by stage", queue=queue, stage=stage)
        self.log.error("item %s failed (%s): %s", item_id, stage, message)
        try:
            await self.backend.fail(item_id, message, stage)
        except BackendError as exc:
            self.log.warning("failRunQueueItem for %s failed: %s", item_id, exc)

    async def launch(self, item: PoppedItem) -> Tracked | None:
        spec = dict(item.run_spec)
        self.log.info("popped item %s from %s", item.item_id, item.queue)
        if not spec:
            await self._fail(item.item_id, item.queue, "the run spec of this item is empty or not an object",
                             "agent")
            return None
        resource = spec.get("resource")
        if resource not in (None, "", "kubernetes"):
            await self._fail(item.item_id, item.queue, f"this agent launches on Kubernetes only; the item asks "
                             f"for resource {resource!r}", "agent")
            return None
        if spec.get("uri") == SCHEDULER_URI and sum(1 for t in self._active() if t.scheduler) >= \
                self.s.max_schedulers:
            # Like the official agent: not acked, so W&B hands the item out again later.
            self.log.info("item %s is a sweep scheduler and max_schedulers (%g) are running; leaving it queued",
                          item.item_id, self.s.max_schedulers)
            return None
        spec["run_id"] = str(spec.get("run_id") or derived_run_id(item.item_id))
        try:
            job = await prepare_job(spec, self.jobs, builder=builder_type(self.s.agent_config))
        except JobError as exc:
            await self._fail(item.item_id, item.queue, str(exc), "agent")
            return None
        except BackendError as exc:  # may pass later: W&B hands the un-acked item out again
            self.log.warning("resolving the job of item %s failed: %s; the item will be re-queued by W&B",
                             item.item_id, exc)
            return None
        try:
            objs = build_workload(spec, item_id=item.item_id, queue=item.queue,
                                  settings=self.s.manifest_settings(), job=job)
        except ManifestError as exc:
            await self._fail(item.item_id, item.queue, exc.message if exc.rule in ("namespace",) else str(exc),
                             "agent")
            return None
        workload = objs[-1]
        ns = workload["metadata"]["namespace"]
        name = workload["metadata"]["name"]
        created_any = False
        # The workload first; the auxiliary objects (additional_services) then get an ownerReference
        # to it, so Kubernetes deletes them with it (TTL, stop, cancel) and none leak.
        owner: dict[str, Any] | None = None
        workload_rt: ResourceType | None = None
        for obj in [workload, *objs[:-1]]:
            rt = None
            if owner is not None:
                obj["metadata"]["ownerReferences"] = [owner]
            try:
                rt = await self.kube.resolve(obj["apiVersion"], obj["kind"])
                created_obj, created = await self.kube.create(obj)
                created_any = created_any or (created and obj is workload)
                owner_item = ((created_obj.get("metadata") or {}).get("annotations") or {}).get(ANN_ITEM_ID)
                if not created and owner_item != item.item_id:
                    # The name is taken by something this item did not create: never adopt it.
                    raise KubeError(409, "AlreadyExists", f"{obj['kind']} {obj['metadata']['name']} already "
                                    "exists and belongs to " + (f"run-queue item {owner_item}" if owner_item
                                                                else "something else") +
                                    "; give the queue config's metadata.name a ${run_id} macro")
            except KubeError as exc:
                what = rt.key if rt is not None else f"{obj['kind']} ({obj['apiVersion']})"
                msg = f"{exc.status}: cannot create {what} {obj['metadata']['name']} in {ns}: {exc.message}"
                if workload_rt is not None and created_any:  # undo only what this call created
                    with contextlib.suppress(KubeError):
                        await self.kube.delete(workload_rt, ns, name)
                await self._fail(item.item_id, item.queue, msg, "agent")
                return None
            except Exception as exc:  # the API server unreachable, TLS problems...
                self.log.warning("creating %s for item %s failed: %s; the item will be re-queued by W&B",
                                 obj["kind"], item.item_id, exc)
                return None
            if obj is workload:
                workload_rt = rt
                owner = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": name,
                         "uid": created_obj["metadata"]["uid"]}
        rt = workload_rt
        assert rt is not None
        tracked = Tracked(
            item_id=item.item_id, item_label=workload["metadata"]["labels"][LABEL_ITEM], queue=item.queue,
            run_id=spec["run_id"], entity=str(spec.get("entity")), project=str(spec.get("project")).lower(),
            rt=rt, namespace=ns, name=name, launched_at=time.monotonic(),
            scheduler=spec.get("uri") == SCHEDULER_URI)
        self.tracked[item.item_id] = tracked
        self.monitor.ensure(rt, ns)
        self.monitor.ensure(PODS, ns)
        if created_any:
            self.metrics.inc("items_launched_total", "Workloads created", queue=item.queue)
            self.log.info("launched %s %s/%s for item %s (run %s)", rt.kind, ns, name, item.item_id,
                          tracked.run_id)
        else:
            self.log.info("item %s was launched already as %s %s/%s; adopting it", item.item_id, rt.kind,
                          ns, name)
        try:
            acked = await self.backend.ack(item.item_id, tracked.run_id)
            if not acked:
                self.log.warning("ack of item %s was refused (acked elsewhere?); keeping its workload",
                                 item.item_id)
        except BackendError as exc:
            self.log.warning("ack of item %s failed: %s", item.item_id, exc)
        await self._status("RUNNING")
        return tracked

    # ---------------------------------------------------------------- monitoring

    async def reconcile(self) -> None:
        now = time.monotonic()
        for t in list(self.tracked.values()):
            if t.state in TERMINAL:
                continue
            obj = self.monitor.objects.get(t.key)
            if obj is None:
                unseen = self.monitor.is_synced(t.rt, t.namespace) and now - t.launched_at > UNSEEN_GRACE
                if t.key in self.monitor.gone or (unseen and await self._vanished(t)):
                    await self._finish(t, STOPPED if t.deleting else FAILED,
                                       f"{t.rt.kind} {t.namespace}/{t.name} was deleted before it finished")
                continue
            status = workload_status(obj)
            pods = self.monitor.pods.get(t.item_label, {})
            state = status.state
            if state == STARTING and any(pod_running(p) for p in pods.values()):
                state = RUNNING
            if state in (FINISHED, FAILED):
                await self._finish(t, state, status.message)
                continue
            if state == RUNNING and t.state != RUNNING:
                self.log.info("run %s (%s/%s) is running", t.run_id, t.namespace, t.name)
            t.state = state
            for pod in pods.values():
                for text in pod_warnings(pod):
                    await self._warn(t, text)
            if state == STARTING and not pods and now - t.events_checked_at >= EVENTS_CHECK_INTERVAL:
                t.events_checked_at = now
                await self._check_events(t)
            if state == STARTING and self.s.start_timeout > 0 and now - t.launched_at > self.s.start_timeout:
                msg = f"the run did not start within {self.s.start_timeout:g}s"
                if t.last_warning:
                    msg += f" ({t.last_warning})"
                await self._delete(t)
                await self._finish(t, FAILED, msg, stage="agent")
                continue
            await self._check_stop(t, now)

    async def _check_events(self, t: Tracked) -> None:
        """No pods yet: the reason is in the workload's events (exceeded quota, admission webhooks)."""
        try:
            events, _ = await self.kube.list(EVENTS, t.namespace, field_selector=(
                f"involvedObject.name={t.name},involvedObject.kind={t.rt.kind}"))
        except Exception as exc:
            self.log.debug("listing events of %s/%s failed: %s", t.namespace, t.name, exc)
            return
        for text in event_warnings(events):
            await self._warn(t, text)

    async def _vanished(self, t: Tracked) -> bool:
        try:
            return await self.kube.get(t.rt, t.namespace, t.name) is None
        except Exception:
            return False

    async def _warn(self, t: Tracked, text: str) -> None:
        if text in t.warnings:
            return
        t.warnings.add(text)
        t.last_warning = text
        self.metrics.inc("warnings_total", "Warnings reported to W&B", queue=t.queue)
        self.log.warning("item %s: %s", t.item_id, text)
        try:
            await self.backend.warn(t.item_id, text)
        except BackendError as exc:
            self.log.warning("updateRunQueueItemWarning failed: %s", exc)

    async def _check_stop(self, t: Tracked, now: float) -> None:
        if t.deleting or now - t.stop_checked_at < STOP_CHECK_INTERVAL or not t.entity:
            return
        t.stop_checked_at = now
        try:
            stopped = await self.backend.run_stopped(t.entity, t.project, t.run_id)
        except BackendError as exc:
            self.log.warning("RunStoppedStatus for %s failed: %s", t.run_id, exc)
            return
        if not stopped:
            return
        if t.stop_seen_at is None:
            t.stop_seen_at = now
            self.log.info("stop requested for run %s; deleting its workload after %gs unless it exits",
                          t.run_id, self.s.stopped_run_timeout)
        if now - t.stop_seen_at >= self.s.stopped_run_timeout and not await self._delete(t):
            await self._finish(t, STOPPED, "stopped")

    async def _delete(self, t: Tracked) -> bool:
        """Delete the workload (background propagation: its pods go too). False when already gone."""
        t.deleting = True
        try:
            deleted = await self.kube.delete(t.rt, t.namespace, t.name)
            self.log.info("deleted %s %s/%s", t.rt.kind, t.namespace, t.name)
            return deleted
        except Exception as exc:
            self.log.warning("deleting %s/%s failed: %s (will retry)", t.namespace, t.name, exc)
            t.deleting = False
            return True

    async def _finish(self, t: Tracked, state: str, message: str, stage: str = "run") -> None:
        t.state = state
        self.metrics.inc("items_finished_total", "Workloads that reached a terminal state", queue=t.queue,
                         state=state)
        if state == FAILED:
            await self._fail(t.item_id, t.queue, message or f"{t.rt.kind} {t.name} failed", stage)
        else:
            self.log.info("run %s (%s/%s) %s", t.run_id, t.namespace, t.name, state)
        self.tracked.pop(t.item_id, None)
        if not self._active():
            await self._status("POLLING")
