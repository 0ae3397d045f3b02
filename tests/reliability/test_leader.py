"""Two replicas and one lease: kill the leader, and partition the leader from the API server while
it keeps running (and keeps reaching W&B). At no moment do two agents pop; the standby takes over,
and nothing the old leader launched is lost or launched again."""

from __future__ import annotations

import itertools
import time

from harness import FINISHED, RUN_SECONDS, check_runs, run_spec, wait_for

LEASE = 6.0  # seconds; renew deadline 4 s, retry 0.8 s
HA = {"LAUNCH_AGENT_LEADER_ELECTION": "true", "LAUNCH_AGENT_LEASE_DURATION": str(LEASE)}


def pops_by_agent(site) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for entry in site.emu.requests("popFromRunQueue"):
        agent_id = (entry.get("variables") or {}).get("launchAgentId")
        if entry["status"] == 200 and agent_id:
            out.setdefault(agent_id, []).append(entry["time"])
    return out


def assert_one_popper_at_a_time(site) -> list[tuple[float, float]]:
    spans = sorted((min(t), max(t)) for t in pops_by_agent(site).values())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end < start, f"two agents popped at once: {spans}"
    return spans


def test_leader_killed_and_leader_partitioned(site, tally):
    q = site.queue("ha", annotations={RUN_SECONDS: "1"})
    env = {**HA, "LAUNCH_AGENT_LEASE_NAME": f"la-{site.release}"}
    a = site.agent([q], env=env)
    wait_for("a leads", lambda: "acquired lease" in a.current(), agents=[a])
    b = site.agent([q], env=env)
    wait_for("b waits", lambda: "waiting for lease" in b.current(), agents=[b])
    specs = {}
    for i in range(3):
        spec = run_spec(f"ha{i}-{site.release}")
        specs[site.emu.enqueue(q, spec)] = (FINISHED, spec)
    wait_for("a launched them", lambda: all(site.emu.item(i)["state"] == "LEASED" for i in specs), agents=[a, b])
    assert "registered as launch agent" not in b.current()

    # 1. The leader dies without giving the lease up.
    a.sigkill()
    killed_at = time.time()
    tally.fault("SIGKILL of the leader")
    for i in range(3, 5):
        spec = run_spec(f"ha{i}-{site.release}")
        specs[site.emu.enqueue(q, spec)] = (FINISHED, spec)
    wait_for("b leads and launches", lambda: all(site.emu.item(i)["state"] == "LEASED" for i in specs),
             agents=[a, b])
    first_b = min(pops_by_agent(site)[max(pops_by_agent(site), key=lambda k: max(pops_by_agent(site)[k]))])
    tally.extra["takeover after SIGKILL (s)"] = round(first_b - killed_at, 1)

    # 2. The new leader is cut off from the API server but keeps running and keeps reaching W&B.
    a.start()
    wait_for("a is the standby now", lambda: "waiting for lease" in a.current(), agents=[a])
    b.proxy.blackhole()
    cut_at = time.time()
    tally.fault("the leader partitioned from the API server")
    for i in range(5, 8):
        spec = run_spec(f"ha{i}-{site.release}")
        specs[site.emu.enqueue(q, spec)] = (FINISHED, spec)
    wait_for("b gives up the lead", lambda: "lost lease" in b.current(), timeout=60, agents=[a, b])
    wait_for("a takes over", lambda: "acquired lease" in a.current(), timeout=60, agents=[a, b])
    wait_for("a launches the rest", lambda: all(site.emu.item(i)["state"] == "LEASED" for i in specs),
             timeout=180, agents=[a, b])
    b.proxy.restore()
    wait_for("b back to standby", lambda: "back to standby" in b.current(), timeout=60, agents=[b])
    spans = assert_one_popper_at_a_time(site)
    tally.extra["takeover after partition (s)"] = round(spans[-1][0] - cut_at, 1)
    tally.extra["lease duration (s)"] = LEASE
    assert b.alive() and a.alive()
    wait_for("every Job released", lambda: all(
        "launch-agent.wandb.ai/report" not in (j["metadata"].get("finalizers") or []) for j in site.jobs()),
        timeout=120, agents=[a, b])
    check_runs(site, tally, specs)
