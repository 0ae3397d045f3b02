"""What a restarted agent finds by itself, and what one bad object cannot break: a queued custom
resource with no pod yet is adopted with no setting; a malformed operator status does not stop
the other runs from being reported; a workload the agent cannot watch does not hold a slot."""

from __future__ import annotations

import json

from harness import FAILED, FINISHED, RUN_SECONDS, check_runs, condition, run_spec, wait_for

VOLCANO = "jobs.batch.volcano.sh"


def volcano_queue(site, name: str, namespace: str | None = None) -> str:
    queue = f"{name}-{site.release}"
    site.emu.queue(queue, {
        "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": {"namespace": namespace or site.jobs_ns},
        "spec": {"minAvailable": 1, "schedulerName": "volcano", "tasks": [{"name": "w", "replicas": 1, "template": {
            "spec": {"restartPolicy": "Never", "containers": [{"image": "${image_uri}"}]}}}]}})
    return queue


def cr_of(site, run_id: str) -> dict | None:
    found = site.env.get(VOLCANO, namespace=site.jobs_ns, selector=f"wandb.ai/run-id={run_id}")
    return found[0] if found else None


def set_status(site, obj: dict, status: dict) -> None:
    site.env.kubectl("patch", VOLCANO, obj["metadata"]["name"], "-n", obj["metadata"]["namespace"],
                     "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}))


def test_a_queued_custom_resource_is_adopted_and_a_malformed_status_breaks_nothing(site, tally):
    vq = volcano_queue(site, "vc")
    jq = site.queue("jb", annotations={RUN_SECONDS: "1", "localenv.launch-agent.dev/outcome": "fail"})
    queued, odd = run_spec(f"vq-{site.release}"), run_spec(f"vodd-{site.release}")
    items = {site.emu.enqueue(vq, queued): (FAILED, queued), site.emu.enqueue(vq, odd): (FAILED, odd)}
    agent = site.agent([vq, jq])  # no LAUNCH_AGENT_WORKLOAD_KINDS
    wait_for("both Volcano Jobs created and acked", lambda: all(site.emu.item(i)["state"] == "LEASED" for i in items),
             agents=[agent])
    agent.sigkill()
    tally.fault("SIGKILL with a queued custom resource that has no pod")
    agent.start()
    wait_for("the Volcano Jobs re-adopted", lambda: agent.current().count(f"re-adopted Job {site.jobs_ns}/") >= 2,
             agents=[agent])
    site.env.kubectl("patch", VOLCANO, cr_of(site, odd["run_id"])["metadata"]["name"], "-n", site.jobs_ns,
                     "--subresource=status", "--type=merge", "-p", json.dumps({"status": "not an object"}))
    tally.fault("an operator status of the wrong shape")
    job_run = run_spec(f"jb-{site.release}")
    job_item = site.emu.enqueue(jq, job_run)
    items[job_item] = (FAILED, job_run)
    wait_for("the Job run reported despite it", lambda: condition(site.job(job_run["run_id"]), "Failed")
             and site.emu.item(job_item)["state"] == "FAILED", agents=[agent])
    set_status(site, cr_of(site, queued["run_id"]), {"state": {"phase": "Failed", "message": "evicted by volcano"}})
    set_status(site, cr_of(site, odd["run_id"]), {"state": {"phase": "Aborted"}, "conditions": []})
    wait_for("both failures reported once", lambda: all(site.emu.item(i)["state"] == "FAILED"
                                                         for i, (o, _) in items.items() if o == FAILED),
             agents=[agent])
    check_runs(site, tally, items)


def test_a_workload_the_agent_cannot_watch_is_failed_not_held(site, tally):
    blind = site.env.namespace("blind")
    role = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "patch", "delete"]}
    site.env.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "agent", "namespace": blind},
         "rules": [role]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "agent", "namespace": blind},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "agent"},
         "subjects": [{"kind": "ServiceAccount", "name": f"launch-agent-{site.release}", "namespace": site.agent_ns}]}])
    q = f"blind-{site.release}"
    site.emu.queue(q, {"metadata": {"namespace": blind}, "spec": {"template": {"metadata": {"annotations": {
        "localenv.launch-agent.dev/outcome": "keep-running"}}}}})
    after_q = site.queue("after", annotations={RUN_SECONDS: "1"})
    spec, after = run_spec(f"blind-{site.release}"), run_spec(f"after-{site.release}")
    item = site.emu.enqueue(q, spec)
    agent = site.agent([q, after_q], max_jobs=1,
                       env={"LAUNCH_AGENT_TARGET_NAMESPACES": f"{site.agent_ns},{site.jobs_ns},{blind}"})
    tally.fault("a target namespace where the agent may create Jobs but not list or watch them")
    wait_for("the unwatchable run failed", lambda: site.emu.item(item)["state"] == "FAILED", agents=[agent])
    message = site.emu.item(item)["error"]["message"]
    assert "cannot watch" in message and "list and watch" in message, message
    after_item = site.emu.enqueue(after_q, after)
    wait_for("its slot freed: the next item served", lambda: site.emu.item(after_item)["state"] == "LEASED",
             agents=[agent])
    assert site.env.get("jobs.batch", namespace=blind) == [], "the unwatchable Job was deleted"
    check_runs(site, tally, {after_item: (FINISHED, after)})
    fails = site.emu.item(item)["reports"]
    tally.runs += 1
    assert len(fails) == 1, fails
