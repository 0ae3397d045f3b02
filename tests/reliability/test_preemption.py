"""Preempted runs (spot and preemptible nodes): a running pod evicted through the Eviction API, and
one evicted by a node drain. Each run goes back on its queue once, as the same run with
`_resume_count` + 1, and resumes (`WANDB_RESUME=allow`); the preempted item says so in its
warnings. A run already resumed as often as the cap allows is failed with that reason."""

from __future__ import annotations

import json

from harness import FAILED, FINISHED, REQUEUED, RUN_SECONDS, check_runs, run_spec, wait_for


def running_pod(site, run_id: str) -> dict | None:
    pods = [p for p in site.pods(run_id) if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]
    return pods[0] if pods else None


def evict(site, pod: dict) -> None:
    body = {"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"]}}
    site.env.kubectl("create", "--raw",
                     f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}/eviction",
                     "-f", "-", input_text=json.dumps(body))


def requeued_item(site, queue: str, run_id: str, count: int) -> dict | None:
    for item in site.emu.items(site.emu.entity, queue):
        spec = item["run_spec"]
        if spec.get("run_id") == run_id and spec.get("_resume_count") == count:
            return item
    return None


def env_of(job: dict) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def test_evicted_and_drained_runs_are_requeued_once_and_resume(site, tally):
    q = site.queue("spot", annotations={RUN_SECONDS: "600"})
    evicted, drained = run_spec(f"ev-{site.release}"), run_spec(f"dr-{site.release}")
    capped = run_spec(f"cap-{site.release}", _resume_count=1)
    items = {site.emu.enqueue(q, s): s for s in (evicted, drained, capped)}
    ev_item, dr_item, cap_item = items
    agent = site.agent([q], env={"LAUNCH_AGENT_MAX_RESUMES": "1"})
    for spec in items.values():
        wait_for(f"{spec['run_id']} running", lambda s=spec: running_pod(site, s["run_id"]), agents=[agent])

    evict(site, running_pod(site, evicted["run_id"]))
    tally.fault("a running pod evicted through the Eviction API")
    pod = running_pod(site, drained["run_id"])
    node = pod["spec"]["nodeName"]
    site.env.kubectl("drain", node, f"--pod-selector=wandb.ai/run-id={drained['run_id']}", "--force",
                     "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s")
    site.env.kubectl("uncordon", node)
    tally.fault("a running pod evicted by a node drain")
    evict(site, running_pod(site, capped["run_id"]))
    tally.fault("a run preempted once more than the resume cap allows")

    resumed = {}
    for spec in (evicted, drained):
        found = wait_for(f"{spec['run_id']} requeued", lambda s=spec: requeued_item(site, q, s["run_id"], 1),
                         agents=[agent])
        resumed[found["id"]] = spec | {"_resume_count": 1}
        wait_for(f"{spec['run_id']} resumed", lambda i=found["id"]: site.emu.item(i)["state"] == "LEASED",
                 agents=[agent])
    for item_id, spec in resumed.items():
        jobs = [j for j in site.jobs(spec["run_id"])
                if j["metadata"]["annotations"]["wandb.ai/run-queue-item-id"] == item_id]
        assert len(jobs) == 1
        env = env_of(jobs[0])
        assert env["WANDB_RESUME"] == "allow" and env["WANDB_RUN_ID"] == spec["run_id"]
    for item_id in (ev_item, dr_item):
        got = site.emu.item(item_id)
        assert got["state"] == "LEASED" and not got["reports"], got
        assert any("preempted" in w["message"] and "requeued" in w["message"] for w in got["warnings"]), got
    wait_for("the capped run failed", lambda: site.emu.item(cap_item)["state"] == "FAILED", agents=[agent])
    message = site.emu.item(cap_item)["error"]["message"]
    assert "preempted" in message and "LAUNCH_AGENT_MAX_RESUMES=1" in message, message
    assert requeued_item(site, q, capped["run_id"], 2) is None
    # Exactly once: one requeue per preemption, even after the agent restarts.
    agent.sigkill()
    agent.start()
    wait_for("the restarted agent caught up", lambda: "registered as launch agent" in agent.current(),
             agents=[agent])
    pushes = [e for e in site.emu.requests("pushToRunQueueByName") if e["status"] == 200]
    assert len(pushes) == 2, pushes
    assert site.env.evictions() >= 3
    check_runs(site, tally, {ev_item: (REQUEUED, evicted), dr_item: (REQUEUED, drained),
                             cap_item: (FAILED, capped), **{i: (FINISHED, s) for i, s in resumed.items()}})
