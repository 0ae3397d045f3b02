"""A run with its own W&B key (`_wandb_api_key`) launched twice for the same item (the agent stopped
between creating the objects and acking, so W&B hands the item out again): the second launch adopts
the workload and its key Secret, with only the RBAC the chart grants for per-user keys (`secrets:
create`, no `get` beyond the agent's own API-key Secret). A Secret of that name that the workload
did not come with is refused, and the new workload is removed again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent.controller.creating import Refused, create_objects
from agent.kube.client import Kube
from agent.manifest import ManifestSettings, build_workload
from localenv import helm

pytestmark = pytest.mark.cluster

CHART = Path(__file__).resolve().parents[2] / "charts" / "launch-agent"
ITEM = "UnVuUXVldWVJdGVtOjQy"


def chart_rbac(agent_ns: str, jobs_ns: str) -> list[dict[str, Any]]:
    """The chart's ServiceAccount, Roles and RoleBindings with per-user keys on."""
    objs = helm.template(CHART, {"agent": {"apiKey": "local-" + "a" * 40, "perUserApiKeys": True},
                                 "launchConfig": "queues: [q]\n", "namespace": agent_ns,
                                 "additionalTargetNamespaces": [jobs_ns]})
    return [o for o in objs if o["kind"] in ("ServiceAccount", "Role", "RoleBinding")]


def workload_objects(jobs_ns: str, agent_ns: str) -> list[dict[str, Any]]:
    settings = ManifestSettings(agent_namespace=agent_ns, target_namespaces=(jobs_ns,),
                                api_key_secret="wandb-api-key-ci", agent_identity="ci", per_user_keys=True)
    spec = {"entity": "acme", "project": "p", "run_id": "r1", "docker": {"docker_image": "busybox:1.36"},
            "_wandb_api_key": "local-" + "u" * 40,
            "resource_args": {"kubernetes": {"metadata": {"namespace": jobs_ns}}}}
    return build_workload(spec, item_id=ITEM, queue="q", settings=settings)


def test_a_relaunch_adopts_the_key_secret_without_reading_it(kube, namespace):
    agent_ns, jobs_ns = namespace("agent"), namespace("jobs")
    rbac = chart_rbac(agent_ns, jobs_ns)
    kube.apply(rbac)
    (sa,) = [o["metadata"]["name"] for o in rbac if o["kind"] == "ServiceAccount"]
    kubeconfig = kube.sa_kubeconfig(agent_ns, sa)
    assert not kube.can_i(kubeconfig, "get", "secrets", jobs_ns), "the chart grants no get on other Secrets"

    async def launch() -> Any:
        client = Kube.connect(str(kubeconfig))
        try:
            return await create_objects(client, workload_objects(jobs_ns, agent_ns), ITEM)
        finally:
            await client.aclose()

    first = asyncio.run(launch())
    assert first.new
    again = asyncio.run(launch())
    assert not again.new and again.workload["metadata"]["uid"] == first.workload["metadata"]["uid"]
    (secret,) = [o for o in workload_objects(jobs_ns, agent_ns) if o["kind"] == "Secret"]
    held = kube.get("secrets", namespace=jobs_ns)
    owners = [o["metadata"].get("ownerReferences") for o in held
              if o["metadata"]["name"] == secret["metadata"]["name"]]
    assert owners == [[{"apiVersion": "batch/v1", "kind": "Job", "name": first.workload["metadata"]["name"],
                        "uid": first.workload["metadata"]["uid"]}]]


def test_a_key_secret_the_workload_did_not_come_with_is_refused(kube, namespace):
    agent_ns, jobs_ns = namespace("agent"), namespace("jobs")
    rbac = chart_rbac(agent_ns, jobs_ns)
    kube.apply(rbac)
    (sa,) = [o["metadata"]["name"] for o in rbac if o["kind"] == "ServiceAccount"]
    objs = workload_objects(jobs_ns, agent_ns)
    (secret,) = [o for o in objs if o["kind"] == "Secret"]
    kube.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                "metadata": {"name": secret["metadata"]["name"], "namespace": jobs_ns},
                "stringData": {"password": "someone else's"}})

    async def launch() -> Any:
        client = Kube.connect(str(kube.sa_kubeconfig(agent_ns, sa)))
        try:
            return await create_objects(client, objs, ITEM)
        finally:
            await client.aclose()

    with pytest.raises(Refused, match="already exists"):
        asyncio.run(launch())
    kube.wait_for("the workload of the refused launch to be deleted",
                  lambda: not kube.get("jobs.batch", namespace=jobs_ns))
