"""The periodic full resync: which kinds to watch in which namespaces, a fresh list of all of them,
and the launch records of items a previous process was still preparing.

Kinds come from three places: batch Jobs always; `LAUNCH_AGENT_WORKLOAD_KINDS` if set; and the
rules this ServiceAccount holds in each target namespace (SelfSubjectRulesReview): every kind it
may create, list and watch outside the core API is a kind the queues can launch, so custom
resources (a Volcano Job still queued, with no pod yet) are found without any setting. Kinds the
pipeline launches are added as they appear; owners of labelled pods too.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from agent.controller.prepare import ROLE_RECORD
from agent.kube.client import CONFIGMAPS, JOBS, KubeError, ResourceType
from agent.manifest import ANN_ITEM_ID, LABEL_ROLE

if TYPE_CHECKING:
    from agent.controller.agent import Agent

RESYNC_INTERVAL = 300.0
SYNC_WAIT = 60.0
# API groups whose kinds are never the workload of a run.
_NOT_WORKLOADS = frozenset({"", "authorization.k8s.io", "authentication.k8s.io", "rbac.authorization.k8s.io",
                            "coordination.k8s.io", "events.k8s.io", "networking.k8s.io", "policy",
                            "storage.k8s.io", "discovery.k8s.io", "apiextensions.k8s.io"})
_NEEDED = {"create", "list", "watch"}


class Resync:
    def __init__(self, agent: Agent, interval: float = RESYNC_INTERVAL) -> None:
        self.a = agent
        self.interval = interval
        self.done_once = asyncio.Event()

    async def loop(self) -> None:
        first = True
        while True:
            self.a.heartbeats.beat("resync")
            try:
                await self.once(relist=not first)
                first = False
                self.done_once.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.a.log.warning("resync failed: %s (retrying)", exc)
                await asyncio.sleep(min(self.a.s.poll_interval * 2, 10.0))
                continue
            await asyncio.sleep(self.interval)

    async def once(self, *, relist: bool) -> None:
        a = self.a
        namespaces = a.s.manifest_settings().targets()
        kinds = await self.kinds(namespaces)
        for ns in namespaces:
            for rt in kinds:
                a.track_kind(rt, ns)
        if relist:
            a.monitor.relist()
        await self._wait_synced()
        await self._owners(namespaces)
        if a.stage.durable():
            await self._records()

    async def kinds(self, namespaces: list[str]) -> list[ResourceType]:
        a = self.a
        found: dict[str, ResourceType] = {JOBS.key: JOBS}
        for spec in a.s.workload_kinds:
            api_version, _, kind = spec.rpartition("/")
            try:
                rt = await a.kube.resolve(api_version, kind)
                found[rt.key] = rt
            except KubeError as exc:
                a.log.warning("cannot watch %s: %s", spec, exc)
        for ns in namespaces:
            try:
                rules = await a.kube.rules(ns)
            except KubeError as exc:
                if exc.status >= 500:
                    raise
                a.log.debug("cannot read the rules of this identity in %s: %s", ns, exc)
                continue
            for rule in rules:
                verbs = set(rule.get("verbs") or [])
                if "*" not in verbs and not verbs >= _NEEDED:
                    continue
                for group in rule.get("apiGroups") or []:
                    if group in _NOT_WORKLOADS or group == "*":
                        continue
                    for plural in rule.get("resources") or []:
                        if "/" in plural or plural == "*" or (group, plural) == (JOBS.group, JOBS.plural):
                            continue
                        rt = await a.kube.kind_of(group, plural)
                        if rt is not None and rt.namespaced:
                            found.setdefault(rt.key, rt)
        return list(found.values())

    async def _wait_synced(self) -> None:
        """Until every stream listed once (or refused): popping waits for a complete view."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SYNC_WAIT
        while loop.time() < deadline:
            if all(self.a.monitor.is_synced(rt, ns) or self.a.monitor.refused(rt, ns, 0) is not None
                   for rt, ns in self.a.monitor.watched()):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("the watches did not list within "
                           f"{SYNC_WAIT:g}s: " + ", ".join(f"{rt.key} in {ns}" for rt, ns in self.a.monitor.watched()
                                                           if not self.a.monitor.is_synced(rt, ns)))

    async def _owners(self, namespaces: list[str]) -> None:
        """Kinds that own this agent's pods (a custom resource nobody configured) are watched too."""
        for pods in list(self.a.monitor.pods.values()):
            for pod in pods.values():
                for owner in pod["metadata"].get("ownerReferences") or []:
                    if owner.get("apiVersion", "").startswith("batch/") and owner.get("kind") == "Job":
                        continue
                    try:
                        rt = await self.a.kube.resolve(owner["apiVersion"], owner["kind"])
                    except (KubeError, KeyError):
                        continue
                    if rt.key not in self.a.kinds:
                        for ns in namespaces:
                            self.a.track_kind(rt, ns)

    async def _records(self) -> None:
        """Resume the items a previous process was preparing; drop records of launched items."""
        a = self.a
        try:
            records, _ = await a.kube.list(CONFIGMAPS, a.s.namespace, f"{a.selector},{LABEL_ROLE}={ROLE_RECORD}")
        except KubeError as exc:
            a.log.warning("cannot list launch records in %s: %s", a.s.namespace, exc)
            return
        launched = {str((o["metadata"].get("annotations") or {}).get(ANN_ITEM_ID)) for o in a.monitor.objects.values()}
        for record in records:
            item_id = str((record["metadata"].get("annotations") or {}).get(ANN_ITEM_ID) or "")
            if item_id in launched:
                try:
                    await a.kube.delete(CONFIGMAPS, a.s.namespace, record["metadata"]["name"])
                except KubeError as exc:
                    a.log.warning("deleting launch record %s failed: %s", record["metadata"]["name"], exc)
            elif item_id and item_id not in a.pipeline.in_flight:
                a.pipeline.resume(record)

