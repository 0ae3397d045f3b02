"""The prepare stage of the launch pipeline: popped run spec -> resolved run spec, before the
manifest is built. Job resolution (a W&B job artifact -> image or code source) and image builds
plug in here as `Preparer`s.

A preparer that may take minutes (an image build) is `durable`: before it runs, the agent writes
a launch record (a ConfigMap in its own namespace, named after the run-queue item) and acks the
item, so W&B does not hand it out again while it is prepared, and a restarted agent finds the
record and resumes. A preparer saves its progress on the record (`ctx.save(...)`) and reads it
back on resume (`ctx.progress`); running it twice for the same item must be harmless. Each
preparer runs at most `concurrency` items at once; other items do not wait for it.

    class Resolve:                      # a fast step: no record
        name, durable, concurrency = "job", False, 4
        def wants(self, spec): return bool(spec.get("job"))
        async def prepare(self, ctx): return {**ctx.spec, "docker": {"docker_image": ...}}

    agent = Agent(settings, backend, kube, metrics, log, preparers=[Resolve(), Build()])
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.backend.operations import Backend, PoppedItem
from agent.kube.client import CONFIGMAPS, Kube
from agent.manifest import (
    ANN_ITEM_ID,
    ANN_QUEUE,
    LABEL_ITEM,
    LABEL_QUEUE,
    LABEL_ROLE,
    ManifestSettings,
    identity_labels,
    item_label,
    label_value,
    short_hash,
)

ROLE_RECORD = "launch-record"
SPEC_KEY = "run-spec.json"
PROGRESS_KEY = "progress.json"


class PrepareError(Exception):
    """The item cannot be prepared: it is failed with this stage ("agent", "build", ...) and message."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message


class LeaveQueued(Exception):
    """The item cannot be prepared now, for a reason that may pass (W&B did not answer): it is not
    acked, so W&B hands it out again when its claim expires. Only for non-durable steps."""


@dataclass
class PrepareContext:
    """What a preparer gets: the item, the spec so far, and its saved progress."""

    item: PoppedItem
    spec: dict[str, Any]
    kube: Kube
    backend: Backend
    log: logging.Logger
    settings: ManifestSettings
    progress: dict[str, Any] = field(default_factory=dict)
    job: Any = None  # the resolved job (agent.jobspec.ResolvedJob), set by the job step
    _save: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    async def save(self, **progress: Any) -> None:
        """Persist progress on the launch record (kept across restarts; JSON values)."""
        self.progress.update(progress)
        if self._save is not None:
            await self._save(dict(self.progress))


class Preparer(Protocol):
    name: str
    durable: bool  # may take minutes: launch record + early ack before it runs
    concurrency: int  # at most this many items in this step at once

    def wants(self, spec: Mapping[str, Any]) -> bool: ...

    async def prepare(self, ctx: PrepareContext) -> dict[str, Any]:
        """The spec after this step (or raise PrepareError / LeaveQueued); may set ctx.job."""
        ...


class Stage:
    """The preparers in order, each behind its own concurrency limit."""

    def __init__(self, preparers: list[Preparer]) -> None:
        self.preparers = list(preparers)
        self._limits = {p.name: asyncio.Semaphore(max(1, p.concurrency)) for p in self.preparers}

    def limit(self, preparer: Preparer) -> asyncio.Semaphore:
        return self._limits[preparer.name]

    def durable(self) -> bool:
        """Whether any step may leave launch records behind (then they are looked for on resync)."""
        return any(p.durable for p in self.preparers)


def record_name(item_id: str) -> str:
    return f"launch-record-{short_hash(item_id, length=20)}"


def record_object(item: PoppedItem, settings: ManifestSettings) -> dict[str, Any]:
    """The launch record of an item being prepared (the spec without any per-user API key)."""
    spec = {k: v for k, v in item.run_spec.items() if k != "_wandb_api_key"}
    labels = {**identity_labels(settings), LABEL_ITEM: item_label(item.item_id),
              LABEL_QUEUE: label_value(item.queue), LABEL_ROLE: ROLE_RECORD}
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": record_name(item.item_id), "namespace": settings.agent_namespace,
                     "labels": labels, "annotations": {ANN_ITEM_ID: item.item_id, ANN_QUEUE: item.queue}},
        "data": {SPEC_KEY: json.dumps(spec), PROGRESS_KEY: "{}"},
    }


def item_of_record(record: Mapping[str, Any]) -> PoppedItem | None:
    ann = (record.get("metadata") or {}).get("annotations") or {}
    data = record.get("data") or {}
    try:
        spec = json.loads(data.get(SPEC_KEY) or "")
    except ValueError:
        return None
    if not ann.get(ANN_ITEM_ID) or not isinstance(spec, dict):
        return None
    return PoppedItem(item_id=str(ann[ANN_ITEM_ID]), run_spec=spec, queue=str(ann.get(ANN_QUEUE, "")))


def progress_of_record(record: Mapping[str, Any]) -> dict[str, Any]:
    try:
        progress = json.loads(((record.get("data") or {}).get(PROGRESS_KEY)) or "{}")
    except ValueError:
        return {}
    return progress if isinstance(progress, dict) else {}


async def save_progress(kube: Kube, record: Mapping[str, Any], progress: dict[str, Any]) -> None:
    meta = record.get("metadata") or {}
    await kube.patch(CONFIGMAPS, str(meta.get("namespace")), str(meta.get("name")),
                     {"data": {PROGRESS_KEY: json.dumps(progress)}})
