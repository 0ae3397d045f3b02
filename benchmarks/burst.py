"""Scenario 1, burst: N runs enqueued at once on one Job queue (`max_jobs` N), at W&B latency 0 and
50 ms per request; scenario 3, many queues (Q queues x R runs, `max_jobs` Q*R) and a priority
queue (low-priority runs enqueued with high-priority ones, `max_jobs` small: the high ones must
start first).

Every run is one fresh site (localenv + emulator) per agent: first the floor (the same N Jobs
created in a tight loop by one client), then the agent, started and given the runs just after
its first idle poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import agents, audit, floor, launches
from benchmarks.config import OFFICIAL, OFFICIAL_DOCKER, Sizes
from benchmarks.launches import Batch, Outcome
from benchmarks.report import Scenario
from benchmarks.site import ENTITY, Site, Sites

RUN_SECONDS = "localenv.launch-agent.dev/run-seconds"
OUTCOME = "localenv.launch-agent.dev/outcome"


def job_queue_config(run_seconds: int = 2, outcome: str | None = None) -> dict[str, Any]:
    annotations = {RUN_SECONDS: str(run_seconds)}
    if outcome:
        annotations[OUTCOME] = outcome
    # A long TTL: no Job is deleted by the TTL controller while a figure is taken.
    return {"spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 3600,
                     "template": {"metadata": {"annotations": annotations},
                                  "spec": {"containers": [{"resources": {"requests": {"cpu": "10m"}}}]}}}}


def floor_burst(s: Site, queue: str, n: int) -> dict[str, Any]:
    """The same N Jobs created by one client in a tight loop (before any agent runs)."""
    s.queue(queue, job_queue_config())
    items = s.emu.push_many(ENTITY, queue, [{"runSpec": launches.run_spec(f"floor{i}")} for i in range(n)])
    return floor.tight_loop(s.kubeconfigs["floor"], floor.workloads(s, items, queue))


def settle_after_finish(s: Site, n: int, extra: float = 3.0, timeout: float = 180.0) -> None:
    """Wait until N agent Jobs have ended (the job controller said so), then `extra` seconds, so the
    W&B count covers each run's whole life (stop checks, final reports): the last request for a run
    (the official agent's `RunState`) came within half a second of the last Job's end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = s.audit_events()
        ended = set(audit.jobs_finished(events)) - audit.names(events, s.user("floor"), "jobs")
        if len(ended) >= n:
            break
        time.sleep(0.5)
    time.sleep(extra)


def one_run(sites: Sites, kind: str, batch: Batch, latency_ms: float, workdir: Path, *, max_jobs: int,
            nodes: int = 2,
            floor_runs: int = 0, priorities: bool = False,
            prepare: Callable[[Site], None] | None = None) -> tuple[Outcome, dict[str, Any] | None]:
    """One agent through one batch on a fresh site; (its outcome, the floor's figures)."""
    with sites.run(nodes) as s:
        floor_fig = floor_burst(s, "floor", floor_runs) if floor_runs else None
        if prepare is not None:
            prepare(s)
        for queue in batch.queues():
            s.queue(queue, job_queue_config(), priorities=priorities)
        s.emu.settings(auto_init_on_ack=True)  # the runs call wandb.init (the official agent checks)
        if latency_ms:
            s.emu.add_fault("*", "latency", seconds=latency_ms / 1000.0)
        agent = agents.start(kind, s, batch.queues(), max_jobs, workdir)
        try:
            first_poll = agents.wait_polling(s, agent)
            out = launches.measure(s, agent, batch, settle=lambda: settle_after_finish(s, len(batch.runs)))
            out.figures["first_poll_s"] = first_poll
            return out, floor_fig
        except agents.AgentFailed as exc:
            return Outcome(False, error=str(exc)), floor_fig
        finally:
            agent.stop()


def _kinds(sizes: Sizes) -> list[tuple[str, int]]:
    return [(k, sizes.reps_ours if k == "ours" else sizes.reps_official) for k in sizes.agents]


def side_of(kind: str) -> str:
    return "ours" if kind == "ours" else "official"


LAUNCH_FIGURES = (("total_s", "s"), ("drain_s", "s"), ("p50_s", "s"), ("p95_s", "s"), ("max_s", "s"),
                  ("wandb_requests_per_run", "requests"), ("api_requests_per_run", "requests"),
                  ("cpu_s", "CPU s"), ("peak_rss_mb", "MB"))


def record(sc: Scenario, kind: str, label: str, out: Outcome, *, figures: tuple[tuple[str, str], ...] = LAUNCH_FIGURES,
           suffix: str = "", targets: dict[str, str] | None = None) -> None:
    side = side_of(kind)
    sc.runs.append({"agent": kind, "case": label, "ok": out.ok, "error": out.error, "figures": out.figures})
    if out.series:
        sc.series.setdefault(label, {}).setdefault(kind, []).append(out.series)
    for key, unit in figures:
        fig = sc.figure(f"{key.removesuffix('_s').removesuffix('_mb')}{suffix}", unit, (targets or {}).get(key, ""))
        if out.ok:
            fig.add(side, out.figures.get(key))
        else:
            fig.fail(side, out.error)


def record_floor(sc: Scenario, fl: dict[str, Any] | None, suffix: str, case: str = "0ms") -> None:
    if fl is None:
        return
    from benchmarks.stats import latency_summary

    lat = latency_summary(fl["latencies"])
    for key, value in (("total", fl["total_s"]), ("drain", fl["total_s"]), ("p50", lat["p50"]),
                       ("p95", lat["p95"]), ("max", lat["max"]), ("wandb_requests_per_run", 0.0),
                       ("api_requests_per_run", 1.0)):
        if f"{key}{suffix}" in sc.figures:
            sc.figures[f"{key}{suffix}"].add("floor", value)
    sc.series.setdefault(f"floor @{case}", []).append(
        {"enqueue_to_created": [(0.0, t) for t in fl["latencies"]]})


def run_burst(sizes: Sizes, work: Path, sites: Sites) -> Scenario:
    n = sizes.burst_runs
    sc = Scenario("burst", f"burst of {n}")
    batch = Batch([("burst", launches.run_spec(f"b{i:04d}"), None) for i in range(n)])
    targets = {"drain_s": "≤ official/10 and ≤ 2x floor", "total_s": "≤ poll interval + drain target"}
    cases = [(k, reps, lat) for k, reps in _kinds(sizes) for lat in sizes.latencies_ms]
    if sizes.official_docker_variant and OFFICIAL in sizes.agents:
        cases.append((OFFICIAL_DOCKER, sizes.reps_official, 0.0))
    for kind, reps, lat in cases:
        suffix = f" @{lat:g}ms" + (", docker on PATH" if kind == OFFICIAL_DOCKER else "")
        for rep in range(reps):
            out, fl = one_run(sites, kind, batch, lat, work / f"burst-{kind}-{lat:g}-{rep}", max_jobs=n, floor_runs=n)
            record(sc, kind, f"{lat:g}ms", out, suffix=suffix, targets=targets)
            if kind != OFFICIAL_DOCKER:
                for other in sizes.latencies_ms:  # the floor has no W&B: the same at every latency
                    record_floor(sc, fl, f" @{other:g}ms", f"{other:g}ms")
    sc.notes.append(f"{n} runs pushed in one call just after an idle poll (10 s poll interval for both agents); "
                    "total: first enqueue -> last Job created; drain: first pop -> last Job created; "
                    "the official agent without docker on its PATH unless the row says so")
    return sc


def run_many_queues(sizes: Sizes, work: Path, sites: Sites) -> Scenario:
    q, r = sizes.queues, sizes.runs_per_queue
    sc = Scenario("many_queues", f"{q} queues x {r}")
    batch = Batch([(f"q{j:02d}", launches.run_spec(f"m{j:02d}x{i:02d}"), None) for i in range(r) for j in range(q)])
    for kind, reps in _kinds(sizes):
        for rep in range(reps):
            out, fl = one_run(sites, kind, batch, 0.0, work / f"queues-{kind}-{rep}", max_jobs=q * r, floor_runs=q * r)
            record(sc, kind, "0ms", out, targets={"drain_s": "≤ official/10 and ≤ 2x floor"})
            record_floor(sc, fl, "")
    return sc


def run_priority(sizes: Sizes, work: Path, sites: Sites) -> Scenario:
    low, high, limit = sizes.priority_low, sizes.priority_high, sizes.priority_max_jobs
    sc = Scenario("priority", f"priority queue ({low} low + {high} high, max_jobs {limit})")
    runs = [("prio", launches.run_spec(f"lo{i:03d}"), 3) for i in range(low)]
    runs += [("prio", launches.run_spec(f"hi{i:03d}"), 0) for i in range(high)]
    for kind, reps in _kinds(sizes):
        for rep in range(reps):
            out, _ = one_run(sites, kind, Batch(runs), 0.0, work / f"prio-{kind}-{rep}", max_jobs=limit, priorities=True)
            if out.ok:
                order = out.series["create_order"]
                last_high = max(i for i, run in enumerate(order) if run.startswith("hi"))
                out.figures["inversions"] = sum(1 for run in order[:last_high] if run.startswith("lo"))
            record(sc, kind, "0ms", out, figures=(("inversions", "low runs started before the last high one"),
                                                  ("total_s", "s")))
    sc.figure("inversions", "low runs started before the last high one").add("floor", 0.0)
    sc.notes.append("all runs pushed in one call, low-priority ones first; an inversion is a low-priority run "
                    "whose Job was created before the last high-priority run's Job")
    return sc
