"""Telling W&B about a run exactly once: acks, failures, warnings and preemption requeues.

A mutation whose answer was lost may have been applied. Where W&B can be asked (the item's state
through `GetRunQueueItem`), the agent asks before it repeats an ack or a failure; a requeue whose
answer was lost is never repeated (a second copy of a resumed run is worse than a warning).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from agent.backend.operations import Backend
from agent.backend.transport import BackendError
from agent.metrics import Metrics

ACK_DONE, ACK_REFUSED, ACK_UNKNOWN = "true", "refused", ""
class RetryLater(Exception):
    """An action could not finish now (W&B or the API server did not answer); it is taken again."""


_SETTLED = frozenset({"LEASED", "FAILED", "FINISHED"})


@dataclass(frozen=True)
class Outcome:
    """What a report call achieved: `done` when W&B holds it, `value` its result (e.g. an item id)."""

    done: bool
    value: str = ""


class Reporter:
    def __init__(self, backend: Backend, metrics: Metrics, log: logging.Logger) -> None:
        self.backend = backend
        self.metrics = metrics
        self.log = log

    def _error(self, operation: str, exc: BackendError, item_id: str) -> None:
        self.metrics.inc("backend_errors_total", "Failed W&B API calls", operation=operation)
        self.log.warning("%s for item %s failed: %s (will retry)", operation, item_id, exc)

    async def _state(self, queue: str, item_id: str) -> tuple[str, str] | None:
        """(state, associated run id) of the item, or None when W&B cannot be asked now."""
        try:
            got = await self.backend.item_state(queue, item_id)
        except BackendError as exc:
            self._error("GetRunQueueItem", exc, item_id)
            return None
        return ("", "") if got is None else (got.state, got.run_id)

    async def ack(self, item_id: str, queue: str, run_id: str, *, check_first: bool = False) -> str:
        """Ack the item: ACK_DONE, ACK_REFUSED (W&B answered success: false and does not hold it as
        leased to this run), or ACK_UNKNOWN (no answer; try again later)."""
        if check_first:
            state = await self._state(queue, item_id)
            if state is None:
                return ACK_UNKNOWN
            if state[0] in _SETTLED and state[1] == run_id:
                return ACK_DONE
            if state[0] != "CLAIMED":  # back on its queue (claim expired) or gone: W&B would refuse
                return ACK_REFUSED
        try:
            ok = await self.backend.ack(item_id, run_id)
        except BackendError as exc:
            self._error("ackRunQueueItem", exc, item_id)
            if not exc.ambiguous:
                return ACK_UNKNOWN
            ok = False
        if ok:
            return ACK_DONE
        state = await self._state(queue, item_id)
        if state is None:
            return ACK_UNKNOWN
        if state[0] in _SETTLED and state[1] == run_id:
            return ACK_DONE  # an earlier ack whose answer was lost
        self.log.warning("ack of item %s was refused (its claim expired, or another agent holds it); "
                         "keeping its workload", item_id)
        return ACK_REFUSED

    async def fail(self, item_id: str, queue: str, message: str, stage: str, *, check_first: bool) -> bool:
        """failRunQueueItem once: True when W&B holds the failure (sent now or earlier)."""
        if check_first:
            state = await self._state(queue, item_id)
            if state is not None and state[0] == "FAILED":
                return True
        self.metrics.inc("items_failed_total", "Run-queue items failed, by stage", queue=queue, stage=stage)
        self.log.error("item %s failed (%s): %s", item_id, stage, message)
        try:
            await self.backend.fail(item_id, message, stage)
            return True
        except BackendError as exc:
            self._error("failRunQueueItem", exc, item_id)
            if exc.ambiguous:
                state = await self._state(queue, item_id)
                return state is not None and state[0] == "FAILED"
            return False

    async def warn(self, item_id: str, text: str) -> bool:
        self.metrics.inc("warnings_total", "Warnings reported to W&B")
        self.log.warning("item %s: %s", item_id, text)
        try:
            await self.backend.warn(item_id, text)
            return True
        except BackendError as exc:
            self._error("updateRunQueueItemWarning", exc, item_id)
            return exc.ambiguous  # a lost answer: most likely recorded, never worth a duplicate

    async def requeue(self, queue: str, spec: dict[str, Any], item_id: str) -> Outcome:
        """Push the resumed run; Outcome(True, new id). Outcome(True, "") when the answer was lost."""
        try:
            new_id = await self.backend.push(queue, spec)
        except BackendError as exc:
            self._error("pushToRunQueueByName", exc, item_id)
            return Outcome(exc.ambiguous)
        self.metrics.inc("items_requeued_total", "Preempted runs put back on their queue", queue=queue)
        return Outcome(True, new_id)


def resume_spec(spec: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The run spec of a preempted run's next attempt, as the official agent builds it: same run id,
    `_resume_count` + 1, no sweep id (a finished sweep must not refuse the resume), and the keys
    its launch helper fills in when they are missing."""
    out = {k: v for k, v in spec.items() if k != "sweep_id"}
    out["run_id"] = run_id
    out["_resume_count"] = resume_count(spec) + 1
    out.setdefault("docker", {})
    out.setdefault("resource", None)
    out.setdefault("git", {})
    out.setdefault("overrides", {})
    return out


def resume_count(spec: dict[str, Any]) -> int:
    value = spec.get("_resume_count", 0)
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0
