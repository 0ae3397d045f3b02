"""What W&B has been told about a run, written on the workload itself.

Every decision the agent takes about a run (ack it, report its end, requeue it, stop it) is read
back from these annotations, so a restart, a failover or a lost response repeats nothing. The
finalizer keeps the workload (and so this record) until the final report is done: a TTL or a user
deletion waits for it, and a restarted agent still finds the run.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
from collections.abc import Mapping
from typing import Any

from agent.kube.client import Kube, KubeError, ResourceType

PREFIX = "launch-agent.wandb.ai/"
FINALIZER = PREFIX + "report"
ACKED = PREFIX + "acked"  # "true", or "refused <time>" when W&B answered success: false
REPORTED = PREFIX + "reported"  # the final outcome told to W&B: finished, failed, stopped, requeued
DISRUPTED = PREFIX + "disrupted"  # the pod disruption (eviction, preemption) seen before the end
REQUEUE = PREFIX + "requeue"  # "sending" while the requeue is in flight, then the new item id
STOP_REQUESTED = PREFIX + "stop-requested"  # when the stop request was first seen
SCHEDULER = PREFIX + "scheduler"  # "true" for sweep schedulers (max_schedulers)
WARNED = PREFIX + "warned"  # short hashes of the warnings already sent
RUN_SPEC = PREFIX + "run-spec"  # the popped run spec (gzip, base64), to requeue a preempted run
MAX_SPEC = 64 * 1024
KEPT_WARNINGS = 32
MAX_VALUE = 2000


def now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.split(" ")[-1].replace("Z", "+00:00"))
    except ValueError:
        return None


def seconds_since(text: str | None) -> float | None:
    at = parse_time(text)
    return None if at is None else (dt.datetime.now(dt.UTC) - at).total_seconds()


def annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """The workload's annotations, read-only (not copied: the agent reads them for every workload
    on every pass)."""
    return (obj.get("metadata") or {}).get("annotations") or {}


def finalizers(obj: Mapping[str, Any]) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def acked(obj: Mapping[str, Any]) -> bool:
    return annotations(obj).get(ACKED) == "true"


def reported(obj: Mapping[str, Any]) -> str:
    return annotations(obj).get(REPORTED, "")


def stamp_new(obj: dict[str, Any], *, spec: Mapping[str, Any], scheduler: bool) -> None:
    """Bookkeeping on a workload about to be created: the finalizer, the run spec (without a
    per-user API key) and the scheduler flag."""
    meta = obj.setdefault("metadata", {})
    meta["finalizers"] = [*(f for f in meta.get("finalizers") or [] if f != FINALIZER), FINALIZER]
    ann = meta.setdefault("annotations", {})
    if scheduler:
        ann[SCHEDULER] = "true"
    clean = {k: v for k, v in spec.items() if k != "_wandb_api_key"}
    packed = base64.b64encode(gzip.compress(json.dumps(clean, sort_keys=True).encode(), 6)).decode()
    if len(packed) <= MAX_SPEC:
        ann[RUN_SPEC] = packed


def run_spec_of(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    packed = annotations(obj).get(RUN_SPEC)
    if not packed:
        return None
    try:
        spec = json.loads(gzip.decompress(base64.b64decode(packed)))
    except (ValueError, OSError):
        return None
    return spec if isinstance(spec, dict) else None


def warned(obj: Mapping[str, Any]) -> list[str]:
    return [h for h in annotations(obj).get(WARNED, "").split(",") if h]


async def record(kube: Kube, rt: ResourceType, obj: dict[str, Any], values: Mapping[str, str | None], *,
                 release: bool = False) -> dict[str, Any] | None:
    """Write annotations (None removes one) and, with `release`, drop the finalizer, in one merge
    patch. Annotations are merged key by key, so they need no precondition; dropping the finalizer
    rewrites the whole list, so that patch is conditional on the resourceVersion: on a conflict
    the object is read again and the patch repeated. Returns the object as written (None when it
    is gone)."""
    meta = obj.get("metadata") or {}
    ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    current: dict[str, Any] | None = obj
    for _ in range(3):
        assert current is not None
        cmeta = current.get("metadata") or {}
        body: dict[str, Any] = {"metadata": {
            "annotations": {k: (v[:MAX_VALUE] if isinstance(v, str) else v) for k, v in values.items()},
        }}
        if release:
            body["metadata"]["resourceVersion"] = cmeta.get("resourceVersion")
            body["metadata"]["finalizers"] = [f for f in cmeta.get("finalizers") or [] if f != FINALIZER]
        try:
            return await kube.patch(rt, ns, name, body)
        except KubeError as exc:
            if exc.status != 409:
                raise
        current = await kube.get(rt, ns, name)
        if current is None:
            return None
    raise KubeError(409, "Conflict", f"{rt.kind} {ns}/{name} kept changing while the agent wrote to it")
