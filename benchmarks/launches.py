"""Drive one agent through a set of enqueued runs on one site and measure the launch path.

The runs are pushed in one call just after an idle poll of the agent (so the total includes the
wait for the next poll, as a user sees it). The run ends when every run's workload exists and
every item is acked, or at the deadline (a failed run, with the reason). Figures:

- total: first enqueue -> last workload created; drain: first pop -> last workload created;
- per run: enqueue -> workload created (p50, p95, max);
- W&B requests per launched run (the emulator's counts over the run, its whole life) and
  API-server requests per launched run (the audit log), with a breakdown by operation;
- CPU seconds and peak RSS of the agent's process tree over the run.

A run in which an item failed, was never acked, or got a second workload counts as failed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import agents, audit
from benchmarks.site import ENTITY, Site
from benchmarks.stats import latency_summary

RUN_LABEL = "wandb.ai/run-id"


@dataclass
class Batch:
    """What to push: (queue, run spec, priority) per run, in push order."""

    runs: list[tuple[str, dict[str, Any], int | None]]

    def queues(self) -> list[str]:
        return list(dict.fromkeys(q for q, _, _ in self.runs))


@dataclass
class Outcome:
    ok: bool
    figures: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    series: dict[str, Any] = field(default_factory=dict)  # for plots: not in the table


def run_spec(run_id: str, **extra: Any) -> dict[str, Any]:
    return {"entity": ENTITY, "project": "bench", "run_id": run_id, "resource": "kubernetes",
            "docker": {"docker_image": "busybox:1.36"},
            "overrides": {"args": [], "entry_point": ["sh", "-c", "true"]}, **extra}


def push(site: Site, batch: Batch) -> list[dict[str, Any]]:
    """Push every run, one call per queue (queues in first-use order); the items, in push order."""
    out: list[dict[str, Any]] = []
    for queue in batch.queues():
        entries = [{"runSpec": spec, **({"priority": prio} if prio is not None else {})}
                   for q, spec, prio in batch.runs if q == queue]
        out += site.emu.push_many(ENTITY, queue, entries)
    return out


def _items(site: Site, ids: set[str]) -> list[dict[str, Any]]:
    return [i for i in site.emu.state()["items"] if i["id"] in ids]


def idle_rates(site: Site, seconds: float) -> dict[str, float]:
    """W&B requests per second by operation while the agent idles."""
    site.emu.clear_requests()
    time.sleep(seconds)
    return {op: n / seconds for op, n in site.emu.counts().items()}


def measure(site: Site, agent: agents.Running, batch: Batch, *, resource: str = "jobs", deadline: float = 300.0,
            idle: dict[str, float] | None = None, settle: Callable[[], None] | None = None,
            after_idle_poll: bool = True) -> Outcome:
    """Push `batch` right after an idle poll (or at once, where the time to the next poll is in no
    figure) and follow it until every run is launched and acked."""
    n = len(batch.runs)
    user = site.user("official" if agent.name.startswith("official") else agent.name)
    if after_idle_poll:
        agents.wait_idle_poll(site, agent)
    site.emu.clear_requests()
    cpu0 = agent.sampler.cpu_seconds
    t_push = time.time()
    items = push(site, batch)
    ids = {i["id"] for i in items}
    runs = {str(spec["run_id"]) for _, spec, _ in batch.runs}
    end = time.monotonic() + deadline
    done = False
    created: dict[str, float] = {}
    while time.monotonic() < end:
        created = {r: t for r, t in audit.created(site.audit_events(), user, resource).items() if r in runs}
        states = [i["state"] for i in _items(site, ids)]
        if any(s == "FAILED" for s in states):
            break
        if len(created) >= n and all(s in ("LEASED", "FINISHED") for s in states):
            done = True
            break
        if not agent.alive():
            return Outcome(False, error=f"{agent.name} exited during the run:\n{agent.log()}")
        time.sleep(0.25)
    t_done = time.time()
    if settle is not None:
        settle()
    t_end = time.time()
    agent.sampler.sample()
    cpu = agent.sampler.cpu_seconds - cpu0
    counts = site.emu.counts()
    got = _items(site, ids)
    events = site.audit_events()
    created = {r: t for r, t in audit.created(events, user, resource).items() if r in runs}
    failed = [i for i in got if i["state"] == "FAILED"]
    if not done:
        why = (f"{len(failed)} item(s) failed: {failed[0].get('error')}" if failed else
               f"after {deadline:.0f} s: {len(created)} of {n} workloads created, "
               f"{sum(i['state'] in ('LEASED', 'FINISHED') for i in got)} of {n} items acked")
        return Outcome(False, error=why, figures=_counts(counts, idle, t_end - t_push, n))
    enqueued = {i["run_spec"]["run_id"]: float(i["created_at"]) for i in got}
    creates = Counter(r for r in _created_runs(events, user, resource) if r in runs)
    twice = sorted(r for r, c in creates.items() if c > 1)
    if twice:
        return Outcome(False, error=f"run(s) {', '.join(twice[:5])} got two workloads")
    missing = sorted(set(enqueued) - set(created))
    if missing:
        return Outcome(False, error=f"no workload for run(s) {', '.join(missing[:5])}")
    made = {run: created[run] for run in enqueued}
    latencies = {run: made[run] - enqueued[run] for run in enqueued}
    first_enqueue = min(enqueued.values())
    first_pop = min(float(i["claimed_at"]) for i in got if i.get("claimed_at"))
    last = max(made.values())
    api = audit.requests_of(events, user, since=t_push, until=t_end)
    figures = {
        "total_s": last - first_enqueue,
        "drain_s": last - first_pop,
        **{f"{k}_s": v for k, v in latency_summary(list(latencies.values())).items()},
        "api_requests_per_run": len(api) / n,
        "cpu_s": cpu, "peak_rss_mb": agent.sampler.peak_rss_between(t_push, t_end),
        "api_breakdown": audit.verbs(api),
        **_counts(counts, idle, t_end - t_push, n),
        "window_s": t_end - t_push, "launch_s": t_done - t_push,
    }
    order = sorted(made, key=made.get)  # type: ignore[arg-type]
    series = {"enqueue_to_created": [(enqueued[r] - first_enqueue, latencies[r]) for r in order],
              "create_order": order}
    return Outcome(True, figures, series=series)


def _created_runs(events: list[dict[str, Any]], user: str, resource: str) -> list[str]:
    """The run id of every workload create that succeeded (a run twice: a duplicate)."""
    out = []
    for e in events:
        if (e.get("stage") == "ResponseComplete" and e.get("verb") == "create"
                and (e.get("objectRef") or {}).get("resource") == resource
                and (e.get("user") or {}).get("username") == user and (e.get("responseStatus") or {}).get("code") == 201):
            out.append((((e.get("responseObject") or {}).get("metadata") or {}).get("labels") or {}).get(RUN_LABEL, ""))
    return out


def _counts(counts: dict[str, int], idle: dict[str, float] | None, seconds: float, n: int) -> dict[str, Any]:
    """W&B requests over the run per launched run, as sent (idle polling included: it is part of
    what the agent costs), and the idle rate measured before, for reference."""
    per_op = {op: c / n for op, c in sorted(counts.items())}
    return {"wandb_requests_per_run": sum(per_op.values()), "wandb_breakdown": per_op,
            "idle_wandb_requests_per_min": sum((idle or {}).values()) * 60.0}


def run_dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path
