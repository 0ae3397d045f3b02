"""The floor no agent can beat: the same workloads created straight from their run specs by one
client (the agent's own Kubernetes client, one keep-alive connection), with no W&B in between.

The floor's Jobs are created suspended: they never run (see `suspended`).

`tight_loop`: one create after another, as fast as the API server answers (the burst floor);
per run, the time from the loop's start to its workload's create. `one_call`: the time one
create call takes (the floor of a single run's enqueue -> created).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from agent.manifest import ManifestSettings, build_workload
from benchmarks.site import ENTITY, Site


def settings(site: Site) -> ManifestSettings:
    # Its own identity, so neither agent sees these workloads as its own.
    return ManifestSettings(agent_namespace=site.agent_ns, target_namespaces=(site.agent_ns, site.jobs_ns),
                            api_key_secret=site.secret, agent_identity="floor", queue_entity=ENTITY)


def workloads(site: Site, items: list[dict[str, Any]], queue: str) -> list[dict[str, Any]]:
    """The workload of each pushed item (its merged run spec), as our agent would build it; a Job
    suspended, so that it never runs."""
    out = []
    for item in items:
        spec = dict(item["run_spec"])
        spec.setdefault("run_id", f"floor{item['seq']}")
        out.append(suspended(build_workload(spec, item_id=item["id"], queue=queue, settings=settings(site))[-1]))
    return out


def suspended(obj: dict[str, Any]) -> dict[str, Any]:
    """A Job created suspended: the API server's work for its create is the same, and the job
    controller gives it no pod. Its pods would queue at the controller's 20 requests/s (5 or 6
    requests per Job) in front of those of the agent's Jobs that follow, which each run waits
    to see end: a floor of 200 running Jobs held every burst run a minute longer."""
    if obj.get("kind") == "Job":
        obj["spec"]["suspend"] = True
    return obj


async def _create_all(kubeconfig: Path, objs: list[dict[str, Any]]) -> tuple[float, list[float], list[float]]:
    from agent.kube.client import Kube

    kube = Kube.connect(str(kubeconfig))
    try:
        await kube.resolve(objs[0]["apiVersion"], objs[0]["kind"])  # discovery is not part of the floor
        started = time.perf_counter()
        since_start, per_call = [], []
        for obj in objs:
            before = time.perf_counter()
            _, new = await kube.create(obj)
            assert new, f"floor: {obj['metadata']['name']} existed already"
            now = time.perf_counter()
            since_start.append(now - started)
            per_call.append(now - before)
        return time.perf_counter() - started, since_start, per_call
    finally:
        await kube.aclose()


def tight_loop(kubeconfig: Path, objs: list[dict[str, Any]]) -> dict[str, Any]:
    total, since_start, per_call = asyncio.run(_create_all(kubeconfig, objs))
    return {"total_s": total, "latencies": since_start, "per_call": per_call}
