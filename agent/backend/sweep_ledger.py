"""What a sweep scheduler must not forget, on a ConfigMap in the agent's namespace (one per sweep).

The scheduler writes a parameter set here *before* it pushes the run (``run.<run id>`` with the
arguments and the worker), and the pushed item's id right after; a run that has ended is removed.
So after a restart or a failover the new leader knows every set it was handed and whether its
push is confirmed: an entry without an item id is "in doubt" and is settled against the queue
(the run's item carries the run id once an agent acks it) before anything is pushed again. The
ConfigMap also holds the scheduler item itself (``scheduler.json``), so the scheduler resumes
without W&B handing the item out again; it is deleted when the scheduler ends.

Writes are JSON merge patches (one key each); only the leader writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agent.kube.client import CONFIGMAPS, Kube, KubeError

ROLE_SCHEDULER = "scheduler"
SCHEDULER_KEY = "scheduler.json"
RUN_PREFIX = "run."


@dataclass
class PushedRun:
    run_id: str
    args: dict[str, Any]
    worker: int
    item_id: str | None = None
    misses: int = 0  # run state lookups that found no run

    def doc(self) -> dict[str, Any]:
        return {"args": self.args, "worker": self.worker, "item": self.item_id}


@dataclass
class Ledger:
    kube: Kube
    namespace: str
    name: str
    scheduler: dict[str, Any]
    runs: dict[str, PushedRun] = field(default_factory=dict)

    @classmethod
    def from_object(cls, kube: Kube, obj: dict[str, Any]) -> Ledger:
        meta = obj.get("metadata") or {}
        data = obj.get("data") or {}
        try:
            scheduler = json.loads(data.get(SCHEDULER_KEY) or "{}")
        except ValueError:
            scheduler = {}
        runs: dict[str, PushedRun] = {}
        for key, value in data.items():
            if not key.startswith(RUN_PREFIX):
                continue
            try:
                doc = json.loads(value)
            except ValueError:
                continue
            run_id = key[len(RUN_PREFIX):]
            runs[run_id] = PushedRun(run_id, dict(doc.get("args") or {}), int(doc.get("worker") or 0),
                                     doc.get("item"))
        return cls(kube, str(meta.get("namespace", "")), str(meta.get("name", "")), scheduler, runs)

    @classmethod
    async def open(cls, kube: Kube, namespace: str, name: str, labels: dict[str, str],
                   annotations: dict[str, str], scheduler: dict[str, Any]) -> tuple[Ledger, bool]:
        """Create the ConfigMap, or read it when this sweep's scheduler has one already."""
        obj = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
               "data": {SCHEDULER_KEY: json.dumps(scheduler, sort_keys=True)}}
        found, created = await kube.create(obj)
        return cls.from_object(kube, found), created

    @classmethod
    async def list(cls, kube: Kube, namespace: str, selector: str) -> list[Ledger]:
        objs, _ = await kube.list(CONFIGMAPS, namespace, f"{selector},launch-agent.wandb.ai/role={ROLE_SCHEDULER}")
        return [cls.from_object(kube, o) for o in objs]

    async def _patch(self, data: dict[str, str | None]) -> None:
        if await self.kube.patch(CONFIGMAPS, self.namespace, self.name, {"data": data}) is None:
            raise KubeError(404, "NotFound", f"the scheduler record {self.namespace}/{self.name} is gone")

    async def record(self, run: PushedRun) -> None:
        await self._patch({RUN_PREFIX + run.run_id: json.dumps(run.doc(), sort_keys=True)})
        self.runs[run.run_id] = run

    async def forget(self, run_id: str) -> None:
        await self._patch({RUN_PREFIX + run_id: None})
        self.runs.pop(run_id, None)

    async def set_scheduler(self, scheduler: dict[str, Any]) -> None:
        await self._patch({SCHEDULER_KEY: json.dumps(scheduler, sort_keys=True)})
        self.scheduler = scheduler

    async def delete(self) -> None:
        await self.kube.delete(CONFIGMAPS, self.namespace, self.name)
