"""The start timeout applies only to a workload none of whose pods ever ran, and never to a
suspended one: a Job retrying a failed pod (backoffLimit > 0) is not "never started", a Job held
by Kueue is not stuck; a pod that stays Pending is failed with the reason once the timeout passes."""

from __future__ import annotations

import json
import time

from harness import FAILED, FINISHED, OUTCOME, RUN_SECONDS, check_runs, condition, run_spec, wait_for

START_TIMEOUT = "4"


def passes_after(agent, seconds: float) -> None:
    """Let the agent reconcile for a while past a deadline (its reconcile loop runs every second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert agent.alive()
        time.sleep(0.5)


def test_retried_suspended_and_pending_workloads(site, tally):
    retry_q = site.queue("retry", annotations={RUN_SECONDS: "3", OUTCOME: "fail"}, spec={"backoffLimit": 2})
    held_q = site.queue("held", annotations={RUN_SECONDS: "1"}, spec={"suspend": True})
    stuck_q = site.queue("stuck", pod_spec={"nodeSelector": {"gpu": "none-here"}})
    retried, held, stuck = (run_spec(f"{n}-{site.release}") for n in ("retry", "held", "stuck"))
    items = {site.emu.enqueue(retry_q, retried): (FAILED, retried), site.emu.enqueue(held_q, held): (FINISHED, held),
             site.emu.enqueue(stuck_q, stuck): (FAILED, stuck)}
    retry_item, held_item, stuck_item = items
    agent = site.agent([retry_q, held_q, stuck_q], env={"WANDB_LAUNCH_START_TIMEOUT": START_TIMEOUT})
    tally.fault("a Job retrying its failed pod (backoffLimit 2) past the start timeout")
    tally.fault("a suspended Job past the start timeout")
    tally.fault("a pod Pending past the start timeout")

    wait_for("the retried Job failed by Kubernetes", lambda: condition(site.job(retried["run_id"]), "Failed"),
             timeout=120, agents=[agent])
    job = site.job(retried["run_id"])
    assert job["status"].get("failed") == 3, job["status"]
    wait_for("its failure reported", lambda: site.emu.item(retry_item)["state"] == "FAILED", agents=[agent])
    message = site.emu.item(retry_item)["error"]["message"]
    assert "BackoffLimitExceeded" in message and "did not start" not in message, message

    wait_for("the Pending run failed by the start timeout", lambda: site.emu.item(stuck_item)["state"] == "FAILED",
             agents=[agent])
    message = site.emu.item(stuck_item)["error"]["message"]
    assert f"did not start within {START_TIMEOUT}s" in message and "Unschedulable" in message, message
    wait_for("the stuck Job deleted", lambda: site.job(stuck["run_id"]) is None, agents=[agent])

    passes_after(agent, float(START_TIMEOUT) + 3)
    job = site.job(held["run_id"])
    assert job is not None and job["spec"]["suspend"] is True, "the suspended Job was deleted"
    assert site.emu.item(held_item)["state"] == "LEASED"
    # Kueue admits it: the run starts, and finishes.
    site.env.kubectl("patch", "job", job["metadata"]["name"], "-n", site.jobs_ns, "--type=merge",
                     "-p", json.dumps({"spec": {"suspend": False}}))
    wait_for("the resumed Job complete", lambda: condition(site.job(held["run_id"]), "Complete"), agents=[agent])
    wait_for("its end recorded", lambda: "launch-agent.wandb.ai/report" not in (
        site.job(held["run_id"])["metadata"].get("finalizers") or []), agents=[agent])
    check_runs(site, tally, items)
