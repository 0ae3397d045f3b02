"""Watches what the agent launched: one list+watch per (namespace, resource type) with the agent's
label selector, re-listing on `410 Gone` and after any error (with capped backoff). Keeps the
latest object per name, the pods per run-queue item, and every pod disruption seen (a pod that is
evicted or preempted disappears soon after; the disruption is remembered until the agent has
written it onto the workload). What changed since the reconciler last looked is kept too
(`take_changes`), so a watch event costs a look at one workload, not at all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.kube.client import PODS, Kube, KubeError, ResourceType, WatchExpired
from agent.manifest import LABEL_ITEM

Key = tuple[str, str, str]  # (resource key, namespace, name)
# How long one watch request lasts. The periodic resync starts every stream over from a list at
# about this interval anyway; a shorter watch only costs requests (a minute's watches were half of
# the agent's API traffic with hundreds of runs in flight). A dead connection is found by the
# client's read timeout, which is this plus a margin.
WATCH_SECONDS = 300

# DisruptionTarget reasons that mean "the run did not fail, its node or pod was taken away".
DISRUPTION_REASONS = frozenset({"EvictionByEvictionAPI", "PreemptionByScheduler", "TerminationByKubelet",
                                "DeletionByTaintManager", "DeletionByPodGC"})


def pod_disruption(pod: dict[str, Any]) -> str | None:
    """`reason: message` of a pod's DisruptionTarget condition, or None."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "DisruptionTarget" and \
                str(cond.get("status")) == "True" and cond.get("reason") in DISRUPTION_REASONS:
            name = (pod.get("metadata") or {}).get("name", "")
            return f"pod {name}: {cond['reason']}: {cond.get('message', '')}".rstrip(": ")
    return None


def _newer(a: Any, b: Any) -> bool:
    """Whether resourceVersion a is newer than b (they are etcd revisions; opaque ones never are)."""
    try:
        return int(a) > int(b)
    except (TypeError, ValueError):
        return False


@dataclass
class _Stream:
    rt: ResourceType
    namespace: str
    task: asyncio.Task[None] | None = None
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    beat: float = field(default_factory=time.monotonic)
    error: KubeError | None = None
    error_since: float = 0.0


class Monitor:
    def __init__(self, kube: Kube, selector: str, *, log: logging.Logger,
                 on_event: Callable[[], None] | None = None, watch_seconds: int = WATCH_SECONDS,
                 workload_selector: str | None = None) -> None:
        self._kube = kube
        self._selector = selector
        self._workload_selector = workload_selector or selector
        self._log = log
        self._on_event = on_event
        self._watch_seconds = watch_seconds
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.objects: dict[Key, dict[str, Any]] = {}
        self.gone: set[Key] = set()
        # item label -> pod name -> pod
        self.pods: dict[str, dict[str, dict[str, Any]]] = {}
        # item label -> the first disruption seen on one of its pods
        self.disruptions: dict[str, str] = {}
        self._changed: set[Key] = set()
        self._changed_items: set[str] = set()  # item labels whose pods changed
        self._relisted = False
        self.generation = 0  # counts changes to `objects`: what is derived from them is recomputed on a change

    def _touch(self, key: Key) -> None:
        """`key`'s object changed: for the reconciler (`take_changes`) and for what is derived from
        all of them (`generation`)."""
        self._changed.add(key)
        self.generation += 1

    def take_changes(self) -> tuple[set[Key], set[str], bool]:
        """Workloads and item labels (of pods) changed since the last call, and whether a stream
        listed again since (then every object may have changed)."""
        changed, items, relisted = self._changed, self._changed_items, self._relisted
        self._changed, self._changed_items, self._relisted = set(), set(), False
        return changed, items, relisted

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

    def all_synced(self) -> bool:
        return all(s.synced.is_set() for s in self._streams.values())

    def refused(self, rt: ResourceType, namespace: str, longer_than: float) -> KubeError | None:
        """The 4xx error (RBAC, kind not served) that has kept this stream from listing for a while."""
        stream = self._streams.get((rt.key, namespace))
        if stream is None or stream.error is None or stream.synced.is_set():
            return None
        if time.monotonic() - stream.error_since < longer_than:
            return None
        return stream.error

    def watched(self) -> list[tuple[ResourceType, str]]:
        return [(s.rt, s.namespace) for s in self._streams.values()]

    def inject(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """An object this process just created, known before its watch event arrives."""
        meta = obj.get("metadata") or {}
        key = (rt.key, str(meta.get("namespace", "")), str(meta.get("name", "")))
        if key not in self.objects:
            self.objects[key] = obj
            self.gone.discard(key)
            self._touch(key)

    def update(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """An object as this process just wrote it (newer than the cache until its event arrives)."""
        meta = obj.get("metadata") or {}
        key = (rt.key, str(meta.get("namespace", "")), str(meta.get("name", "")))
        if key in self.gone:
            return
        current = self.objects.get(key)
        if current is not None and _newer((current.get("metadata") or {}).get("resourceVersion"),
                                          meta.get("resourceVersion")):
            return
        self.objects[key] = obj
        self._touch(key)

    def relist(self) -> None:
        """Start every stream over from a fresh list (the periodic resync)."""
        for stream in self._streams.values():
            if stream.task is not None:
                stream.task.cancel()
            stream.task = asyncio.create_task(self._run(stream), name=f"watch {stream.rt.key} in {stream.namespace}")

    async def aclose(self) -> None:
        tasks = [s.task for s in self._streams.values() if s.task]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._streams.clear()

    def _apply(self, rt: ResourceType, namespace: str, etype: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        if rt == PODS:
            item = (meta.get("labels") or {}).get(LABEL_ITEM)
            if not item:
                return
            self._changed_items.add(item)
            disruption = pod_disruption(obj)
            if disruption and item not in self.disruptions:
                self.disruptions[item] = disruption
            if etype == "DELETED":
                pods = self.pods.get(item, {})
                pods.pop(name, None)
                if not pods:
                    self.pods.pop(item, None)
            else:
                self.pods.setdefault(item, {})[name] = obj
            return
        key = (rt.key, namespace, name)
        self._touch(key)
        if etype == "DELETED":
            self.objects.pop(key, None)
            self.gone.add(key)
            if len(self.gone) > 10000:  # only recent deletions matter to the agent
                self.gone.clear()
                self.gone.add(key)
        else:
            current = self.objects.get(key)
            if etype == "ADDED" or current is None or not _newer(
                    (current.get("metadata") or {}).get("resourceVersion"), meta.get("resourceVersion")):
                self.objects[key] = obj
            self.gone.discard(key)

    def _replace(self, rt: ResourceType, namespace: str, items: list[dict[str, Any]], listed_at: str = "") -> None:
        self._relisted = True
        self.generation += 1
        if rt == PODS:
            for item in list(self.pods):
                pods = self.pods[item]
                for name in [n for n, p in pods.items() if p["metadata"].get("namespace") == namespace]:
                    pods.pop(name)
                if not pods:
                    self.pods.pop(item)
        else:
            fresh = {(rt.key, namespace, i["metadata"]["name"]) for i in items}
            # Objects written after the list was taken (created by this process meanwhile) stay.
            stale = [k for k, o in self.objects.items() if k[0] == rt.key and k[1] == namespace and k not in fresh
                     and not _newer((o.get("metadata") or {}).get("resourceVersion"), listed_at)]
            for key in stale:
                self.objects.pop(key)
                self.gone.add(key)
        for item in items:
            self._apply(rt, namespace, "ADDED", item)

    async def _run(self, stream: _Stream) -> None:
        """List once, then watch from the last resourceVersion for as long as the server has it:
        a dropped connection resumes the watch where it stopped; only `410 Gone` (history
        compacted away) or a failed list starts over with a list."""
        rt, ns = stream.rt, stream.namespace
        sel = self._selector if rt == PODS else self._workload_selector
        delay = 1.0
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    items, rv = await self._kube.list(rt, ns, sel)
                    self._replace(rt, ns, items, rv)
                    stream.synced.set()
                    stream.error = None
                    stream.beat = time.monotonic()
                    self._notify()
                async for etype, obj in self._kube.watch(rt, ns, sel, rv, timeout_seconds=self._watch_seconds):
                    stream.beat = time.monotonic()
                    delay = 1.0
                    new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_rv:
                        rv = new_rv
                    if etype == "BOOKMARK":
                        continue
                    self._apply(rt, ns, etype, obj)
                    self._notify()
                stream.beat = time.monotonic()
            except asyncio.CancelledError:
                raise
            except WatchExpired:
                self._log.info("watch of %s in %s expired (410), re-listing", rt.key, ns)
                rv = None
            except Exception as exc:
                if isinstance(exc, KubeError) and 400 <= exc.status < 500 and not stream.synced.is_set():
                    if stream.error is None:
                        stream.error_since = time.monotonic()
                    stream.error = exc
                if isinstance(exc, KubeError):  # the server refused: start over from a list
                    rv = None
                self._log.warning("watch of %s in %s failed: %s; retrying in %.0fs", rt.key, ns,
                                  exc or type(exc).__name__, delay)
                stream.beat = time.monotonic()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _notify(self) -> None:
        if self._on_event is not None:
            self._on_event()
