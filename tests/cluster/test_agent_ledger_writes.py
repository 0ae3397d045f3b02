"""What the agent writes onto its workloads (agent.controller.ledger.record), on a real API server:
annotations are merged key by key, so a write from a copy that another writer (the job
controller's status updates) has since changed lands in one request; dropping the agent's
finalizer rewrites the list, so that write is conditional and keeps a finalizer added meanwhile."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable

import pytest

from agent.controller import ledger
from agent.kube.client import CONFIGMAPS, Kube
from localenv.pytest_plugin import Kube as Cluster

pytestmark = pytest.mark.cluster

OTHER = "example.com/keep"


def test_an_annotation_write_from_a_stale_copy_is_one_request(kube: Cluster, namespace: Callable[..., str]) -> None:
    ns = namespace("ledger")
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "w", "namespace": ns, "finalizers": [ledger.FINALIZER],
                             "annotations": {"a": "1"}}})

    async def scenario() -> tuple[Counter[str], dict, dict | None]:
        verbs: Counter[str] = Counter()
        client = Kube.connect(str(kube.kubeconfig))
        client.observe = lambda verb, _seconds: verbs.update([verb])
        try:
            stale = await client.get(CONFIGMAPS, ns, "w")
            assert stale is not None
            # Another writer changes the object: the agent's copy is now one version behind.
            await client.patch(CONFIGMAPS, ns, "w", {"metadata": {"annotations": {"b": "2"}}})
            verbs.clear()
            written = await ledger.record(client, CONFIGMAPS, stale, {ledger.ACKED: "true", "a": None})
            counted = Counter(verbs)
            # A finalizer added meanwhile survives the release written from the stale copy.
            await client.patch(CONFIGMAPS, ns, "w", {"metadata": {"finalizers": [ledger.FINALIZER, OTHER]}})
            released = await ledger.record(client, CONFIGMAPS, stale, {ledger.REPORTED: "finished"}, release=True)
            return counted, written or {}, released
        finally:
            await client.aclose()

    counted, written, released = asyncio.run(scenario())
    assert counted == {"patch": 1}, counted  # no 409, no read back, no second patch
    assert written["metadata"]["annotations"].get(ledger.ACKED) == "true"
    assert written["metadata"]["annotations"].get("b") == "2" and "a" not in written["metadata"]["annotations"]
    assert released is not None and released["metadata"].get("finalizers") == [OTHER]
    live = json.loads(kube.kubectl("get", "configmap", "w", "-n", ns, "-o", "json").stdout)
    assert live["metadata"]["annotations"][ledger.REPORTED] == "finished"
    assert live["metadata"]["annotations"][ledger.ACKED] == "true"
    kube.kubectl("patch", "configmap", "w", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
