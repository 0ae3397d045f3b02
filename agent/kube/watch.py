"""Watches what the agent launched: one list+watch per (namespace, resource type) with the agent's
label selector, re-listing on `410 Gone` and after any error. Keeps the latest object per name and
the pods per run-queue item."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.kube.client import PODS, Kube, ResourceType, WatchExpired
from agent.manifest import LABEL_ITEM


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
