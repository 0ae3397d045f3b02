"""Scenario 2, trickle: one run every 0.5 s for 60 s on one Job queue, `max_jobs` 10, kwok ending
each pod after a few seconds. Figures: enqueue -> workload created, and workload finished ->
final state reported (p50, p95), in two phases with the same agent:

1. the trickle itself: runs that start (they call `wandb.init`; the emulator marks the run
   running on ack) and succeed: enqueue -> Job created (audit log);
2. then a shorter trickle of runs that fail before they call `wandb.init` (a crash at start, the
   case where the agent's report is all the user gets): "finished" is when the pod's phase
   became Failed (kwok's status write, audit log), "reported" when W&B answered the agent's
   `failRunQueueItem` (the emulator's request log). The official agent first waits for the run
   to start (its `RunState` checks, about a minute) before it fails the item; that wait is in
   its figure.

The floor: one create call per run at the same pace (enqueue -> created), and one W&B call
(finished -> reported).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks import agents, audit, floor, launches
from benchmarks.burst import job_queue_config, record, settle_after_finish, side_of
from benchmarks.config import Sizes
from benchmarks.launches import Outcome
from benchmarks.report import Scenario
from benchmarks.site import ENTITY, Site, Sites
from benchmarks.stats import latency_summary

FLOOR_RUNS = 20
FAILING_SHARE = 6  # the failing phase lasts this fraction of the trickle (10 s of 60)


def _floor(s: Site, interval: float, runs: int) -> dict[str, float]:
    s.queue("floor", job_queue_config())
    items = s.emu.push_many(ENTITY, "floor", [{"runSpec": launches.run_spec(f"floor{i}")} for i in range(runs)])
    per_call: list[float] = []
    for obj in floor.workloads(s, items, "floor"):
        per_call += floor.tight_loop(s.kubeconfigs["floor"], [obj])["per_call"]
        time.sleep(interval)
    wandb_calls = []
    for _ in range(runs):
        started = time.perf_counter()
        s.emu.graphql("query Viewer { viewer { id } }")
        wandb_calls.append(time.perf_counter() - started)
    created = latency_summary(per_call)
    reported = latency_summary(wandb_calls)
    return {"created_p50_s": created["p50"], "created_p95_s": created["p95"],
            "reported_p50_s": reported["p50"], "reported_p95_s": reported["p95"]}


def _enqueue(s: Site, queue: str, seconds: float, interval: float, pushed: list[dict[str, Any]]) -> None:
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < seconds:
        # Run ids of their own per queue: the two phases' workloads are told apart by run id.
        pushed.append(s.emu.push(ENTITY, queue, launches.run_spec(f"{queue[:1]}{i:04d}")))
        i += 1
        time.sleep(max(0.0, started + i * interval - time.monotonic()))


def _wait_items(s: Site, agent: agents.Running, ids: set[str], states: tuple[str, ...],
                timeout: float) -> list[dict[str, Any]] | str:
    """The items once all are in one of `states`; else why not (a string)."""
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        got = [i for i in s.emu.state()["items"] if i["id"] in ids]
        if all(i["state"] in states for i in got):
            return got
        if not agent.alive():
            return f"{agent.name} exited:\n{agent.log()}"
        time.sleep(1.0)
    left = sum(i["state"] not in states for i in got)
    return f"{left} of {len(got)} runs not {'/'.join(states)} within {timeout:.0f} s"


def one_run(sites: Sites, kind: str, sizes: Sizes, workdir: Path) -> tuple[Outcome, dict[str, float]]:
    with sites.run(2) as s:
        fl = _floor(s, sizes.trickle_interval, min(FLOOR_RUNS, max(2, int(sizes.trickle_seconds / 2))))
        s.queue("trickle", job_queue_config(run_seconds=sizes.trickle_run_seconds))
        s.queue("failing", job_queue_config(run_seconds=sizes.trickle_run_seconds, outcome="fail"))
        s.emu.settings(auto_init_on_ack=True)
        agent = agents.start(kind, s, ["trickle", "failing"], sizes.trickle_max_jobs, workdir)
        try:
            agents.wait_polling(s, agent)
            agents.wait_idle_poll(s, agent)
            s.emu.clear_requests()
            pushed: list[dict[str, Any]] = []
            _enqueue(s, "trickle", sizes.trickle_seconds, sizes.trickle_interval, pushed)
            started = _wait_items(s, agent, {i["id"] for i in pushed}, ("LEASED", "FINISHED"), 300.0)
            if isinstance(started, str):
                return Outcome(False, error=started), fl
            settle_after_finish(s, len(pushed), extra=2.0)
            s.emu.settings(auto_init_on_ack=False)
            failing: list[dict[str, Any]] = []
            _enqueue(s, "failing", max(2.0, sizes.trickle_seconds / FAILING_SHARE), sizes.trickle_interval, failing)
            reported = _wait_items(s, agent, {i["id"] for i in failing}, ("FAILED",), 300.0)
            if isinstance(reported, str):
                return Outcome(False, error=reported), fl
            return _figures(s, agent, started, reported), fl
        except agents.AgentFailed as exc:
            return Outcome(False, error=str(exc)), fl
        finally:
            agent.stop()


def _figures(s: Site, agent: agents.Running, started: list[dict[str, Any]], failed: list[dict[str, Any]]) -> Outcome:
    user = s.user(side_of(agent.name))
    events = s.audit_events()
    created = audit.created(events, user, "jobs")
    names = audit.created_names(events, user, "jobs")
    finished = audit.workloads_finished(events, names.values())
    conditions = audit.jobs_finished(events)  # the job controller's Failed condition
    reports: dict[str, float] = {}
    for entry in s.emu.requests("failRunQueueItem"):
        reports.setdefault(str(entry["variables"].get("runQueueItemId")), float(entry["time"]))
    wrong = [i for i in failed if (i.get("error") or {}).get("stage") != "run"]
    if wrong:
        return Outcome(False, error=f"{len(wrong)} runs failed at another stage: {wrong[0].get('error')}")
    to_created, to_reported, to_condition = [], [], []
    for item in started:
        run = item["run_spec"]["run_id"]
        if run not in created:
            return Outcome(False, error=f"run {run}: no Job create in the audit log")
        to_created.append(created[run] - float(item["created_at"]))
    for item in failed:
        run = item["run_spec"]["run_id"]
        if names.get(run) not in finished or item["id"] not in reports:
            return Outcome(False, error=f"run {run}: no finished/reported time in the logs")
        to_reported.append(reports[item["id"]] - finished[names[run]])
        if names[run] in conditions:
            to_condition.append(conditions[names[run]] - finished[names[run]])
    c, r = latency_summary(to_created), latency_summary(to_reported)
    # Of ended -> reported, the part before the workload itself says it failed (the job controller).
    cond = latency_summary(to_condition) if to_condition else {"p50": float("nan"), "p95": float("nan")}
    return Outcome(True, {"created_p50_s": c["p50"], "created_p95_s": c["p95"], "reported_p50_s": r["p50"],
                          "reported_p95_s": r["p95"], "job_failed_p50_s": cond["p50"],
                          "job_failed_p95_s": cond["p95"], "runs": len(started), "failing_runs": len(failed)},
                   series={"enqueue_to_created": [(float(i["created_at"]), d) for i, d in zip(started, to_created,
                                                                                              strict=True)]})


FIGURES = (("created_p50_s", "s"), ("created_p95_s", "s"), ("reported_p50_s", "s"), ("reported_p95_s", "s"))
AGENT_FIGURES = (*FIGURES, ("job_failed_p50_s", "s"), ("job_failed_p95_s", "s"))


def run(sizes: Sizes, work: Path, sites: Sites) -> Scenario:
    sc = Scenario("trickle", f"trickle (1 per {sizes.trickle_interval:g} s for {sizes.trickle_seconds:g} s, "
                             f"max_jobs {sizes.trickle_max_jobs})")
    targets = {"created_p95_s": "<= floor + one poll interval", "reported_p95_s": "<= 2 s"}
    for kind in sizes.agents:
        for rep in range(sizes.reps_ours if kind == "ours" else sizes.reps_official):
            out, fl = one_run(sites, kind, sizes, work / f"trickle-{kind}-{rep}")
            record(sc, kind, "trickle", out, figures=AGENT_FIGURES, targets=targets)
            for key, _ in FIGURES:
                sc.figure(key.removesuffix("_s"), "s").add("floor", fl[key])
    sc.notes.append("created: runs that start and succeed; reported: then runs that fail before wandb.init "
                    "(finished = the pod's phase became Failed, audit log; reported = W&B answered "
                    "failRunQueueItem); job_failed: of that, pod ended -> the job controller's Failed condition on the Job; "
                    "the official agent waits about a minute for such a run to start "
                    "before it fails the item")
    return sc
