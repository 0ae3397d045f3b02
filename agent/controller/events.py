"""Why a workload's pods do not appear (exceeded quota, an admission webhook): the Warning events
of its namespace. One LIST of a namespace's Warning events serves every workload there that waits
for its pods, at most once per `EVENTS_CHECK_INTERVAL`, so a burst of Jobs waiting for the job
controller costs one LIST per namespace, not one per Job."""

from __future__ import annotations

import math
from typing import Any

from agent.controller.status import event_warnings
from agent.kube.client import EVENTS

EVENTS_CHECK_INTERVAL = 5.0  # also the wait before a new workload's first look at its events


class WarningEvents:
    def __init__(self, kube: Any, interval: float = EVENTS_CHECK_INTERVAL) -> None:
        self.kube = kube
        self.interval = interval
        self._texts: dict[str, dict[tuple[str, str], list[str]]] = {}
        self._listed_at: dict[str, float] = {}
        self._listing: set[str] = set()

    def texts(self, namespace: str, kind: str, name: str) -> list[str]:
        """The warnings of one object, as of the namespace's last list."""
        return self._texts.get(namespace, {}).get((kind, name), [])

    def claim(self, namespace: str, now: float) -> bool:
        """True when the namespace's events are to be listed now (by the caller, with `refresh`):
        not listed for `interval` seconds and no list in flight."""
        if namespace in self._listing or now - self._listed_at.get(namespace, -math.inf) < self.interval:
            return False
        self._listing.add(namespace)
        self._listed_at[namespace] = now
        return True

    async def refresh(self, namespace: str) -> None:
        try:
            events, _ = await self.kube.list(EVENTS, namespace, field_selector="type=Warning")
        finally:
            self._listing.discard(namespace)
        found: dict[tuple[str, str], list[str]] = {}
        for event in events:
            involved = event.get("involvedObject") or {}
            texts = event_warnings([event])
            if texts:
                found.setdefault((str(involved.get("kind", "")), str(involved.get("name", ""))), []).extend(texts)
        self._texts[namespace] = found
