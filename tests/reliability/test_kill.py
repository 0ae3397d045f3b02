"""SIGKILL of the agent at every point of a run's life, then a restart: nothing lost, nothing
launched twice, every end reported exactly once. The agent is held at a point by the W&B
emulator (an answer that takes long, then never comes) or by cutting its API-server connection."""

from __future__ import annotations

from harness import FAILED, FINISHED, OUTCOME, RUN_SECONDS, check_runs, condition, run_spec, wait_for


def test_sigkill_after_pop_before_create(site, tally):
    q = site.queue("pop", annotations={RUN_SECONDS: "1"})
    agent = site.agent([q])
    wait_for("the agent polling", lambda: agent.metric("launch_agent_backend_request_seconds_count"
                                                       '{operation="popFromRunQueue"}') > 0, agents=[agent])
    agent.proxy.blackhole()  # the item is popped, its create hangs
    spec = run_spec(f"pop-{site.release}")
    item = site.emu.enqueue(q, spec)
    wait_for("the item popped", lambda: site.emu.item(item)["state"] == "CLAIMED", agents=[agent])
    agent.sigkill()
    tally.fault("SIGKILL after pop, before create")
    agent.proxy.restore()
    assert site.job(spec["run_id"]) is None
    agent.start()  # W&B hands the item out again when its claim expires
    wait_for("the Job complete", lambda: condition(site.job(spec["run_id"]), "Complete"), agents=[agent])
    wait_for("its end recorded and the Job released", lambda: site.job(spec["run_id"]) is None
             or "launch-agent.wandb.ai/report" not in (site.job(spec["run_id"])["metadata"].get("finalizers") or []),
             agents=[agent])
    check_runs(site, tally, {item: (FINISHED, spec)})


def test_sigkill_after_create_before_ack_and_the_ttl_passes_before_the_restart(site, tally):
    """The Job finishes and its TTL passes while no agent runs, and W&B hands the item out again:
    the finalizer kept the Job, so the new agent adopts it instead of launching it a second time."""
    q = site.queue("ack", annotations={RUN_SECONDS: "1"}, spec={"ttlSecondsAfterFinished": 1})
    spec = run_spec(f"ack-{site.release}")
    item = site.emu.enqueue(q, spec)
    site.emu.add_fault("ackRunQueueItem", "latency", seconds=20, times=1)
    site.emu.add_fault("ackRunQueueItem", "drop", times=1)  # the held ack is never applied
    agent = site.agent([q])
    wait_for("the Job created", lambda: site.job(spec["run_id"]), agents=[agent])
    agent.sigkill()
    tally.fault("SIGKILL after create, before ack")
    wait_for("the Job complete and past its TTL", lambda: (job := site.job(spec["run_id"])) is not None
             and condition(job, "Complete") and job["metadata"].get("deletionTimestamp"), agents=[agent])
    wait_for("the claim expired", lambda: site.emu.item(item)["state"] == "PENDING")
    tally.fault("TTL passed and the item handed out again while the agent was down")
    agent.start()
    wait_for("the item acked by the new agent", lambda: site.emu.item(item)["state"] == "LEASED", agents=[agent])
    wait_for("the Job released and deleted", lambda: site.job(spec["run_id"]) is None, agents=[agent])
    assert "was launched already" in agent.current()
    check_runs(site, tally, {item: (FINISHED, spec)})


def test_sigkill_while_running_and_after_the_end_before_the_report(site, tally):
    q = site.queue("end", annotations={RUN_SECONDS: "6", OUTCOME: "fail"})
    watched, ended = run_spec(f"watch-{site.release}"), run_spec(f"end-{site.release}")
    items = {site.emu.enqueue(q, watched): watched}
    agent = site.agent([q])
    wait_for("the first run acked", lambda: all(site.emu.item(i)["state"] == "LEASED" for i in items),
             agents=[agent])
    agent.sigkill()
    tally.fault("SIGKILL while watching")
    agent.start()
    wait_for("its failure reported", lambda: all(site.emu.item(i)["state"] == "FAILED" for i in items),
             agents=[agent])
    # The second run: the agent reports its end, but the report is held and then lost with the process.
    site.emu.add_fault("failRunQueueItem", "latency", seconds=20, times=1)
    site.emu.add_fault("failRunQueueItem", "drop", times=1)
    second = site.emu.enqueue(q, ended)
    items[second] = ended
    wait_for("the agent sending the report", lambda: f"item {second} failed (run)" in agent.current(),
             agents=[agent])
    agent.sigkill()
    tally.fault("SIGKILL after the Job ended, before its report")
    agent.start()
    wait_for("the failure reported by the new agent", lambda: site.emu.item(second)["state"] == "FAILED",
             agents=[agent])
    wait_for("both Jobs released", lambda: all(
        "launch-agent.wandb.ai/report" not in (j["metadata"].get("finalizers") or []) for j in site.jobs()),
        agents=[agent])
    check_runs(site, tally, {i: (FAILED, s) for i, s in items.items()})


def test_restart_after_the_ttl_of_a_failed_job_passed(site, tally):
    q = site.queue("ttl", annotations={RUN_SECONDS: "2", OUTCOME: "fail"}, spec={"ttlSecondsAfterFinished": 1})
    spec = run_spec(f"ttl-{site.release}")
    item = site.emu.enqueue(q, spec)
    agent = site.agent([q])
    wait_for("acked", lambda: site.emu.item(item)["state"] == "LEASED", agents=[agent])
    agent.sigkill()
    tally.fault("agent down until the finished Job's TTL passed")
    wait_for("the Job failed and past its TTL", lambda: (job := site.job(spec["run_id"])) is not None
             and condition(job, "Failed") and job["metadata"].get("deletionTimestamp"))
    assert site.emu.item(item)["state"] == "LEASED"
    agent.start()
    wait_for("the failure reported", lambda: site.emu.item(item)["state"] == "FAILED", agents=[agent])
    wait_for("the Job deleted", lambda: site.job(spec["run_id"]) is None, agents=[agent])
    assert "failed" in site.emu.item(item)["error"]["message"]
    check_runs(site, tally, {item: (FAILED, spec)})
