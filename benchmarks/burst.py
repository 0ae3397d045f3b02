"""Scenario 1, burst: N runs enqueued at once on one Job queue (`max_jobs` N), at W&B latency 0 and
50 ms per request; and scenario 3, many queues (Q queues x R runs) and a priority queue.

Every run is one fresh site (localenv + emulator) per agent: first the floor (the same N Jobs
created in a tight loop by one client), then the agent, started, settled, and given the runs
just after one of its idle polls.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks import agents, audit, floor, launches
from benchmarks.launches import Batch, Outcome
from benchmarks.site import JOBS_NS, Site, site, user_of

RUN_SECONDS = "localenv.launch-agent.dev/run-seconds"


def job_queue_config(run_seconds: int = 2, outcome: str | None = None) -> dict[str, Any]:
    annotations = {RUN_SECONDS: str(run_seconds)}
    if outcome:
        annotations["localenv.launch-agent.dev/outcome"] = outcome
    # A long TTL: no Job is deleted by the TTL controller while a figure is taken.
    return {"metadata": {"namespace": JOBS_NS},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 3600,
                     "template": {"metadata": {"annotations": annotations},
                                  "spec": {"containers": [{"resources": {"requests": {"cpu": "10m"}}}]}}}}


def floor_burst(s: Site, queue: str, n: int) -> dict[str, Any]:
    """The same N Jobs created by one client in a tight loop (before any agent runs)."""
    s.queue(queue, job_queue_config())
    items = s.emu.push_many("bench", queue, [{"runSpec": launches.run_spec(f"floor{i}")} for i in range(n)])
    return floor.tight_loop(s.kubeconfigs["floor"], floor.workloads(items, queue))


def settle_after_finish(s: Site, n: int, extra: float = 12.0, timeout: float = 120.0) -> None:
    """Wait until N agent Jobs have ended (the job controller said so), then `extra` seconds, so the
    W&B count covers each run's whole life (stop checks, final reports)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = s.audit_events()
        ended = set(audit.jobs_finished(events)) - audit.names(events, user_of("floor"), "jobs")
        if len(ended) >= n:
            break
        time.sleep(0.5)
    time.sleep(extra)


def one_run(kind: str, n: int, latency_ms: float, workdir: Path, *, batch: Batch | None = None,
            max_jobs: int | None = None, nodes: int = 2, with_floor: bool = True) -> tuple[Outcome, dict[str, Any] | None]:
    """One agent through one batch on a fresh site; (its outcome, the floor's figures)."""
    with site(nodes=nodes) as s:
        floor_fig = floor_burst(s, "floor", n) if with_floor else None
        if batch is None:
            batch = Batch([("burst", launches.run_spec(f"b{i:04d}"), None) for i in range(n)])
        for queue in batch.queues():
            s.queue(queue, job_queue_config())
        s.emu.settings(auto_init_on_ack=True)  # the runs call wandb.init (the official agent checks)
        if latency_ms:
            s.emu.add_fault("*", "latency", seconds=latency_ms / 1000.0)
        agent = agents.start(kind, s, batch.queues(), max_jobs or n, workdir)
        try:
            first_poll = agents.wait_polling(s, agent)
            agents.wait_idle_poll(s, agent)  # settled: past its start-up work
            idle = launches.idle_rates(s, agents.POLL_INTERVAL * 2)
            out = launches.measure(s, agent, batch, idle=idle, settle=lambda: settle_after_finish(s, n))
            out.figures["first_poll_s"] = first_poll
            return out, floor_fig
        except agents.AgentFailed as exc:
            return Outcome(False, error=str(exc)), floor_fig
        finally:
            agent.stop()
