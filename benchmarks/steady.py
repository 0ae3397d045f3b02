"""Scenario 4, steady state: W workloads that keep running (Jobs, and in a second run PyTorchJobs),
the agent idle otherwise. Over a fixed window: the agent's CPU seconds per minute, its peak RSS,
and the requests per minute it sends to the API server (audit log) and to W&B (the emulator's
counts), per running workload.

The window is taken twice in the same run: with a few workloads, then with all of them, so the
table shows whether the API-server traffic grows with the number of workloads (watches: flat;
polls: linear).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from benchmarks import agents, audit, launches
from benchmarks.burst import OUTCOME, job_queue_config, record, side_of
from benchmarks.config import Sizes
from benchmarks.launches import Batch, Outcome
from benchmarks.report import Scenario
from benchmarks.site import Sites

SETTLE = 15.0  # after the last create when the workloads have no pods here (PyTorchJobs)
QUIET = 5.0  # after every pod runs: the last watch events and reports of the launch are handled
SETTLE_DEADLINE = 120.0
PODS_PER_NODE = 100  # kwok nodes allow 110


def pytorchjob_queue_config() -> dict[str, Any]:
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": "ptj-${run_id}", "annotations": {OUTCOME: "keep-running"}},
            "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "Never", "template": {
                "spec": {"containers": [{"name": "pytorch", "image": "${image_uri}"}]}}}}}}


def queue_config(kind: str) -> dict[str, Any]:
    if kind == "PyTorchJob":
        return pytorchjob_queue_config()
    config = job_queue_config(outcome="keep-running")
    config["spec"]["template"]["metadata"]["annotations"].pop("localenv.launch-agent.dev/run-seconds")
    return config


def _window(s: Any, agent: agents.Running, seconds: float) -> dict[str, float]:
    s.emu.clear_requests()
    agent.sampler.sample()
    t0, cpu0 = time.time(), agent.sampler.cpu_seconds
    time.sleep(seconds)
    agent.sampler.sample()
    t1, cpu1 = time.time(), agent.sampler.cpu_seconds
    wandb = sum(s.emu.counts().values())
    api = audit.requests_of(s.audit_events(), s.user(side_of(agent.name)), since=t0, until=t1)
    minutes = (t1 - t0) / 60.0
    return {"cpu_s_per_min": (cpu1 - cpu0) / minutes, "peak_rss_mb": agent.sampler.peak_rss_between(t0, t1),
            "api_per_min": len(api) / minutes, "wandb_per_min": wandb / minutes,
            "api_breakdown": audit.verbs(api), "wandb_breakdown": s.emu.counts()}


def nodes_for(workload_kind: str, workloads: int, runs: int) -> int:
    """kwok nodes with room for the pods of `runs` runs of `workloads` each: the runs on a kept
    cluster leave theirs running (a PyTorchJob has no pods here: no training operator runs)."""
    return max(1, math.ceil(workloads * runs / PODS_PER_NODE)) if workload_kind == "Job" else 1


def running_pods(pods: list[dict[str, Any]]) -> int:
    return sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")


def settle(s: Any, workload_kind: str, count: int) -> None:
    """Until the cluster is at rest: every Job's pod in the run's namespace running (the official
    agent's pods carry no label of ours) (the job controller makes pods at its
    own pace, 20 requests/s here, and each pod's events reach both agents), then QUIET seconds.
    The window measures the agent with its workloads running, not the end of their launch."""
    if workload_kind != "Job":
        time.sleep(SETTLE)
        return
    deadline = time.monotonic() + SETTLE_DEADLINE
    while time.monotonic() < deadline and running_pods(s.list("pods")) < count:
        time.sleep(1.0)
    time.sleep(QUIET)


def one_run(sites: Sites, kind: str, workload_kind: str, sizes: Sizes, workdir: Path, nodes: int) -> Outcome:
    small, total = sizes.steady_small, sizes.steady_workloads
    resource = "pytorchjobs" if workload_kind == "PyTorchJob" else "jobs"
    with sites.run(nodes) as s:
        s.queue("steady", queue_config(workload_kind))
        s.emu.settings(auto_init_on_ack=True)
        agent = agents.start(kind, s, ["steady"], total, workdir)
        try:
            agents.wait_polling(s, agent)
            figures: dict[str, Any] = {}
            pushed = 0
            for label, count in (("small", small), ("all", total)):
                batch = Batch([("steady", launches.run_spec(f"s{i:04d}"), None) for i in range(pushed, count)])
                out = launches.measure(s, agent, batch, resource=resource, deadline=600.0, after_idle_poll=False)
                if not out.ok:
                    return Outcome(False, error=f"launching {count} workloads: {out.error}")
                pushed = count
                settle(s, workload_kind, count)
                w = _window(s, agent, sizes.steady_window)
                figures[f"cpu_s_per_min@{label}"] = w["cpu_s_per_min"]
                figures[f"peak_rss_mb@{label}"] = w["peak_rss_mb"]
                figures[f"api_per_min@{label}"] = w["api_per_min"]
                figures[f"wandb_per_min@{label}"] = w["wandb_per_min"]
                figures[f"api_per_workload_min@{label}"] = w["api_per_min"] / count
                figures[f"wandb_per_workload_min@{label}"] = w["wandb_per_min"] / count
                figures[f"breakdown@{label}"] = {"api": w["api_breakdown"], "wandb": w["wandb_breakdown"]}
            figures["api_growth"] = figures["api_per_min@all"] / max(figures["api_per_min@small"], 1e-9)
            return Outcome(True, figures, series={"cpu_rss": agent.sampler.series})
        except agents.AgentFailed as exc:
            return Outcome(False, error=str(exc))
        finally:
            agent.stop()


def run(sizes: Sizes, work: Path, sites: Sites) -> Scenario:
    n, small = sizes.steady_workloads, sizes.steady_small
    sc = Scenario("steady", f"steady state, {n} running")
    for workload_kind in sizes.steady_kinds:
        suffix = "" if workload_kind == "Job" else f", {workload_kind}s"
        figures = (("cpu_s_per_min@all", "CPU s/min"), ("peak_rss_mb@all", "MB"),
                   ("api_per_workload_min@all", "API requests/workload/min"),
                   ("wandb_per_workload_min@all", "W&B requests/workload/min"),
                   ("api_per_min@small", f"API requests/min at {small}"), ("api_per_min@all", f"API requests/min at {n}"))
        targets = {"cpu_s_per_min@all": "<= official/3", "peak_rss_mb@all": "<= official/3",
                   "api_per_workload_min@all": "<= official, flat", "wandb_per_workload_min@all": "<= official"}
        reps = {kind: sizes.reps_ours if kind == "ours" else sizes.reps_official for kind in sizes.agents}
        nodes = nodes_for(workload_kind, n, 1 if sites.fresh else sum(reps.values()))
        for kind, count in reps.items():
            for rep in range(count):
                out = one_run(sites, kind, workload_kind, sizes, work / f"steady-{workload_kind}-{kind}-{rep}", nodes)
                record(sc, kind, f"steady{suffix}", out,
                       figures=tuple((k, u) for k, u in figures), suffix=suffix, targets=targets)
    sc.notes.append(f"windows of {sizes.steady_window:g} s, {QUIET:g} s after every Job's pod runs "
                    f"({SETTLE:g} s after the last create for kinds without pods here); "
                    f"first with {small} workloads, then with {n}")
    return sc
