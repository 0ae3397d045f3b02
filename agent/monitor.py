"""Watches what the agent launched: one list+watch per (namespace, resource type) with the agent's
label selector, re-listing on `410 Gone` and after any error. Keeps the latest object per name and
the pods per run-queue item; state and warnings are derived by the pure functions below."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.kube import PODS, Kube, ResourceType, WatchExpired
from agent.manifest import LABEL_ITEM

STARTING, RUNNING, FINISHED, FAILED, STOPPED = "starting", "running", "finished", "failed", "stopped"
TERMINAL = frozenset({FINISHED, FAILED, STOPPED})

_PHASES = {
    "pending": STARTING, "created": STARTING, "inqueue": STARTING,
    "running": RUNNING, "completing": RUNNING, "restarting": RUNNING,
    "succeeded": FINISHED, "completed": FINISHED, "complete": FINISHED,
    "failed": FAILED, "aborted": FAILED, "timeout": FAILED, "terminated": FAILED, "failuretarget": FAILED,
}
_PRIORITY = (FINISHED, FAILED, RUNNING, STARTING)
_WAITING_WARNINGS = frozenset({"ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "InvalidImageName",
                               "CreateContainerConfigError", "CreateContainerError"})


@dataclass(frozen=True)
class Status:
    state: str
    message: str = ""


def _true_conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return [c for c in conds if isinstance(c, dict) and str(c.get("status")) == "True"]


def job_status(job: dict[str, Any]) -> Status:
    """batch/v1 Job: terminal only from the Complete/Failed conditions (which honour completions
    and backoffLimit); running once a pod is ready."""
    for cond in _true_conditions(job):
        ctype = cond.get("type")
        if ctype in ("Complete", "SuccessCriteriaMet"):
            return Status(FINISHED)
        if ctype in ("Failed", "FailureTarget"):
            reason = cond.get("reason") or "Failed"
            return Status(FAILED, f"Job {job['metadata']['name']} failed: {reason}: {cond.get('message', '')}"
                          .rstrip(": "))
    status = job.get("status") or {}
    if int(status.get("ready") or 0) > 0 or int(status.get("succeeded") or 0) > 0:
        return Status(RUNNING)
    return Status(STARTING)


def custom_status(obj: dict[str, Any]) -> Status:
    """Custom resources by their conventions: Volcano `status.state.phase`, Kubeflow/JobSet
    conditions, JobSet `replicatedJobsStatus`."""
    status = obj.get("status") or {}
    name = f"{obj.get('kind', 'object')} {obj.get('metadata', {}).get('name', '')}"
    state = status.get("state")
    if isinstance(state, dict) and state.get("phase"):
        mapped = _PHASES.get(str(state["phase"]).lower())
        if mapped:
            msg = f"{name} {state['phase']}: {state.get('message', '')}".rstrip(": ") if mapped == FAILED else ""
            return Status(mapped, msg)
    found: dict[str, dict[str, Any]] = {}
    for cond in _true_conditions(obj):
        mapped = _PHASES.get(str(cond.get("type", "")).lower())
        if mapped:
            found.setdefault(mapped, cond)
    for state_name in _PRIORITY:
        if state_name in found:
            cond = found[state_name]
            msg = ""
            if state_name == FAILED:
                msg = f"{name} failed: {cond.get('reason', '')}: {cond.get('message', '')}".rstrip(": ")
            return Status(state_name, msg)
    rjs = status.get("replicatedJobsStatus")
    if isinstance(rjs, list) and any(int(r.get("ready") or 0) or int(r.get("active") or 0) for r in rjs):
        return Status(RUNNING)
    return Status(STARTING)


def workload_status(obj: dict[str, Any]) -> Status:
    if obj.get("apiVersion", "").startswith("batch/") and obj.get("kind") == "Job":
        return job_status(obj)
    return custom_status(obj)


def event_warnings(events: list[dict[str, Any]]) -> list[str]:
    """Warning events of a workload that keep its pods from existing (quota, admission, ...)."""
    out = []
    for ev in events:
        if ev.get("type") == "Warning" and ev.get("reason") in ("FailedCreate", "FailedScheduling"):
            kind = (ev.get("involvedObject") or {}).get("kind", "")
            name = (ev.get("involvedObject") or {}).get("name", "")
            out.append(f"{kind} {name}: {ev.get('reason')}: {ev.get('message', '')}".rstrip(": "))
    return out


def pod_running(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Running", "Succeeded")


def pod_warnings(pod: dict[str, Any]) -> list[str]:
    """Human-actionable problems of one pod, stable texts so each is reported once."""
    out: list[str] = []
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and \
                cond.get("reason") == "Unschedulable":
            out.append(f"pod {name} is Unschedulable: {cond.get('message', '')}".rstrip(": "))
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in _WAITING_WARNINGS:
                out.append(f"pod {name} container {cs.get('name', '')}: {reason}: {waiting.get('message', '')}"
                           .rstrip(": "))
    if status.get("phase") == "Failed" and status.get("reason") in ("Evicted", "Preempting"):
        out.append(f"pod {name} was {status.get('reason')}: {status.get('message', '')}".rstrip(": "))
    return out


@dataclass
class _Stream:
    rt: ResourceType
    namespace: str
    task: asyncio.Task[None] | None = None
    synced: asyncio.Event = field(default_factory=asyncio.Event)


class Monitor:
    def __init__(self, kube: Kube, selector: str, *, log: logging.Logger,
                 on_event: Callable[[], None] | None = None,
                 observe: Callable[[str, float, bool], None] | None = None) -> None:
        self._kube = kube
        self._selector = selector
        self._log = log
        self._on_event = on_event
        self._streams: dict[tuple[str, str], _Stream] = {}
        # (rt.key, namespace, name) -> latest object; removed names go to `gone`
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.gone: set[tuple[str, str, str]] = set()
        # item label -> pod name -> pod
        self.pods: dict[str, dict[str, dict[str, Any]]] = {}

    def ensure(self, rt: ResourceType, namespace: str) -> _Stream:
        key = (rt.key, namespace)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(rt, namespace)
            stream.task = asyncio.create_task(self._run(stream), name=f"watch {rt.key} in {namespace}")
        return stream

    async def wait_synced(self, rt: ResourceType, namespace: str, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.ensure(rt, namespace).synced.wait(), timeout)

    def is_synced(self, rt: ResourceType, namespace: str) -> bool:
        stream = self._streams.get((rt.key, namespace))
        return stream is not None and stream.synced.is_set()

    def watched(self) -> list[tuple[ResourceType, str]]:
        return [(s.rt, s.namespace) for s in self._streams.values()]

    async def aclose(self) -> None:
        tasks = [s.task for s in self._streams.values() if s.task]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _apply(self, rt: ResourceType, namespace: str, etype: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        if rt == PODS:
            item = (meta.get("labels") or {}).get(LABEL_ITEM)
            if not item:
                return
            if etype == "DELETED":
                pods = self.pods.get(item, {})
                pods.pop(name, None)
                if not pods:
                    self.pods.pop(item, None)
            else:
                self.pods.setdefault(item, {})[name] = obj
            return
        key = (rt.key, namespace, name)
        if etype == "DELETED":
            self.objects.pop(key, None)
            self.gone.add(key)
            if len(self.gone) > 10000:  # only recent deletions matter to the agent
                self.gone.clear()
                self.gone.add(key)
        else:
            self.objects[key] = obj
            self.gone.discard(key)

    def _replace(self, rt: ResourceType, namespace: str, items: list[dict[str, Any]]) -> None:
        if rt == PODS:
            for item in list(self.pods):
                pods = self.pods[item]
                for name in [n for n, p in pods.items() if p["metadata"].get("namespace") == namespace]:
                    pods.pop(name)
                if not pods:
                    self.pods.pop(item)
        else:
            fresh = {(rt.key, namespace, i["metadata"]["name"]) for i in items}
            for key in [k for k in self.objects if k[0] == rt.key and k[1] == namespace and k not in fresh]:
                self.objects.pop(key)
                self.gone.add(key)
        for item in items:
            self._apply(rt, namespace, "ADDED", item)

    async def _run(self, stream: _Stream) -> None:
        rt, ns = stream.rt, stream.namespace
        delay = 1.0
        while True:
            try:
                items, rv = await self._kube.list(rt, ns, self._selector)
                self._replace(rt, ns, items)
                stream.synced.set()
                self._notify()
                delay = 1.0
                while True:
                    async for etype, obj in self._kube.watch(rt, ns, self._selector, rv):
                        new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                        if new_rv:
                            rv = new_rv
                        if etype == "BOOKMARK":
                            continue
                        self._apply(rt, ns, etype, obj)
                        self._notify()
            except asyncio.CancelledError:
                raise
            except WatchExpired:
                self._log.info("watch of %s in %s expired (410), re-listing", rt.key, ns)
            except Exception as exc:
                self._log.warning("watch of %s in %s failed: %s; retrying in %.0fs", rt.key, ns, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _notify(self) -> None:
        if self._on_event is not None:
            self._on_event()
