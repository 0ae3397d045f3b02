"""agent.kube.watch.Monitor against a stand-in client: how long it asks each watch to last, and
what it records as changed for the reconciler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from agent.controller.resync import RESYNC_INTERVAL
from agent.kube.client import JOBS, PODS
from agent.kube.watch import Monitor
from agent.manifest import LABEL_ITEM


class Client:
    def __init__(self) -> None:
        self.watches: list[int] = []

    async def list(self, rt: Any, namespace: str, selector: str) -> tuple[list[dict[str, Any]], str]:
        return [], "5"

    async def watch(self, rt: Any, namespace: str, selector: str, rv: str,
                    timeout_seconds: int = 0) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watches.append(timeout_seconds)
        await asyncio.sleep(0.01)  # the server ends the stream
        return
        yield  # an async generator with no events


def test_watches_last_as_long_as_the_resync_interval_not_a_minute():
    """Each stream re-watched every 60 s was most of the agent's API traffic with hundreds of runs
    running (8 streams: 8 requests a minute for nothing); the resync lists every stream afresh
    every RESYNC_INTERVAL anyway."""
    client = Client()

    async def run() -> None:
        monitor = Monitor(client, "sel", log=logging.getLogger("test"))  # type: ignore[arg-type]
        await monitor.wait_synced(JOBS, "jobs")
        await asyncio.sleep(0.05)
        await monitor.aclose()

    asyncio.run(run())
    assert client.watches and min(client.watches) >= RESYNC_INTERVAL


def test_changes_are_kept_for_the_reconciler_until_taken():
    monitor = Monitor(None, "sel", log=logging.getLogger("test"))  # type: ignore[arg-type]
    job = {"metadata": {"name": "j", "namespace": "ns", "resourceVersion": "3"}}
    pod = {"metadata": {"name": "p", "namespace": "ns", "labels": {LABEL_ITEM: "item-1"}}}
    monitor._apply(JOBS, "ns", "ADDED", job)
    monitor._apply(PODS, "ns", "MODIFIED", pod)
    assert monitor.take_changes() == ({(JOBS.key, "ns", "j")}, {"item-1"}, False)
    assert monitor.take_changes() == (set(), set(), False)
    monitor._replace(JOBS, "ns", [job], "4")
    assert monitor.take_changes()[2] is True
    monitor._apply(JOBS, "ns", "DELETED", job)
    assert monitor.take_changes()[0] == {(JOBS.key, "ns", "j")}
