"""The agent's watches on a real API server: an expired resourceVersion (410 Gone) is detected,
and the monitor re-lists and carries on instead of losing its view of the workloads.

A 410 needs history the server no longer has. This module starts a localenv of its own whose API
server serves watches straight from etcd (``--watch-cache=false``, as on a
cluster with the watch cache off) and compacts etcd, as the API server does every few minutes."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.kube.client import JOBS, Kube, ResourceType, WatchExpired
from agent.kube.watch import Monitor
from localenv import cluster, tools

pytestmark = pytest.mark.cluster

SELECTOR = "launch-agent-test=watch"


class Env:
    def __init__(self, state: cluster.State) -> None:
        self.state = state
        self.bin_dir = Path(state.bin_dir)
        self.kubeconfig = Path(state.kubeconfig)

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        return cluster.kubectl(self.bin_dir, self.kubeconfig, *args, input_text=input_text).stdout

    def create_job(self, ns: str, name: str) -> None:
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": ns, "labels": {"launch-agent-test": "watch"}},
               "spec": {"template": {"metadata": {"annotations": {"localenv.launch-agent.dev/outcome": "keep-running"}},
                                     "spec": {"restartPolicy": "Never",
                                              "containers": [{"name": "c", "image": "busybox"}]}}}}
        self.kubectl("apply", "-f", "-", input_text=json.dumps(job))

    def compact(self) -> None:
        cluster.compact_etcd(self.state)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    state_dir = Path(tempfile.mkdtemp(prefix="localenv-watch-"))
    try:
        state = cluster.up(state_dir, bin_dir=tools.bin_dir(), with_emulator=False, tie_to_parent=True,
                           apiserver_args=["--watch-cache=false"], log=lambda _line: None)
    except cluster.LocalenvError as exc:
        pytest.fail(f"the local control plane did not start: {exc}", pytrace=False)
    try:
        yield Env(state)
    finally:
        cluster.down(state_dir)


async def _first_event(kube: Kube, ns: str, rv: str) -> None:
    async for _ in kube.watch(JOBS, ns, SELECTOR, rv, timeout_seconds=10):
        return


async def _expect_expired(kube: Kube, ns: str, rv: str, attempts: int = 5) -> None:
    """Watch from a compacted *rv*: no event may come, only 410. A stream the server closes
    without a word is asked again, as the monitor does."""
    for _ in range(attempts):
        async for etype, obj in kube.watch(JOBS, ns, SELECTOR, rv, timeout_seconds=10):
            raise AssertionError(f"a watch from compacted resourceVersion {rv} delivered {etype} "
                                 f"{obj.get('metadata', {}).get('name')}")
    raise AssertionError(f"no 410 in {attempts} watches from compacted resourceVersion {rv}")


def test_a_compacted_resource_version_raises_watch_expired(env: Env) -> None:
    env.kubectl("create", "namespace", "watch")
    env.create_job("watch", "w1")

    async def scenario() -> None:
        client = Kube.connect(str(env.kubeconfig))
        try:
            _, old = await client.list(JOBS, "watch", SELECTOR)
            env.create_job("watch", "w2")
            env.compact()
            with pytest.raises(WatchExpired):
                await asyncio.wait_for(_expect_expired(client, "watch", old), 60)
            # From a current resourceVersion the same watch works again.
            _, fresh = await client.list(JOBS, "watch", SELECTOR)
            env.create_job("watch", "w3")
            await asyncio.wait_for(_first_event(client, "watch", fresh), 30)
        finally:
            await client.aclose()

    asyncio.run(scenario())


class _StaleFirstList(Kube):
    """The real client, except that its first list answers with a resourceVersion from before a
    compaction — what a watch resuming after a long disconnect holds."""

    def __init__(self, real: Kube, stale_rv: str) -> None:
        super().__init__(real._http, real.default_namespace)
        self.stale_rv = stale_rv
        self.lists = 0

    async def list(self, rt: ResourceType, namespace: str | None, selector: str = "",
                   **kw: Any) -> tuple[list[dict[str, Any]], str]:
        items, rv = await super().list(rt, namespace, selector, **kw)
        self.lists += 1
        return items, (self.stale_rv if self.lists == 1 else rv)


def test_monitor_relists_after_410_and_keeps_following(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.kubectl("create", "namespace", "relist")
    env.create_job("relist", "before")
    log = logging.getLogger("test.monitor")

    async def scenario() -> None:
        real = Kube.connect(str(env.kubeconfig))
        _, stale = await real.list(JOBS, "relist", SELECTOR)
        env.create_job("relist", "meanwhile")
        env.compact()
        client = _StaleFirstList(real, stale)
        monitor = Monitor(client, SELECTOR, log=log)
        try:
            await monitor.wait_synced(JOBS, "relist")
            for _ in range(100):
                if client.lists >= 2:
                    break
                await asyncio.sleep(0.1)
            assert client.lists >= 2, "the expired watch was not followed by a re-list"
            env.create_job("relist", "after")
            for _ in range(100):
                if (JOBS.key, "relist", "after") in monitor.objects:
                    break
                await asyncio.sleep(0.1)
            names = {key[2] for key in monitor.objects if key[:2] == (JOBS.key, "relist")}
            assert names == {"before", "meanwhile", "after"}
        finally:
            await monitor.aclose()
            await client.aclose()

    with caplog.at_level(logging.INFO, logger="test.monitor"):
        asyncio.run(scenario())
    assert any("expired (410), re-listing" in r.getMessage() for r in caplog.records)
