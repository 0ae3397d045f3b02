"""agent.controller.status: workload state from Job conditions and custom-resource conventions, pod warnings."""

from __future__ import annotations

import pytest

from agent.controller.status import (
    FAILED,
    FINISHED,
    RUNNING,
    STARTING,
    init_failures,
    pod_running,
    pod_warnings,
    workload_status,
)


def job(conditions=(), **status):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "status": {"conditions": [{"type": t, "status": s, "reason": r, "message": "m"}
                                      for t, s, r in conditions], **status}}


@pytest.mark.parametrize(("obj", "state"), [
    (job(), STARTING),
    (job(active=1), STARTING),
    (job(active=1, ready=1), RUNNING),
    (job([("Complete", "True", "")], succeeded=3), FINISHED),
    (job([("SuccessCriteriaMet", "True", "")]), FINISHED),
    # a pod failed but backoffLimit allows retries: not failed until the Failed condition
    (job(failed=1, active=1), STARTING),
    (job([("Failed", "True", "BackoffLimitExceeded")], failed=2), FAILED),
    (job([("FailureTarget", "True", "DeadlineExceeded")]), FAILED),
    (job([("Failed", "False", "")], ready=1), RUNNING),
])
def test_job_states(obj, state):
    assert workload_status(obj).state == state


def cr(kind="PyTorchJob", api="kubeflow.org/v1", **status):
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "x"}, "status": status}


def conds(*types):
    return [{"type": t, "status": "True"} for t in types]


@pytest.mark.parametrize(("obj", "state"), [
    (cr(), STARTING),
    (cr(conditions=conds("Created")), STARTING),
    (cr(conditions=conds("Created", "Running")), RUNNING),
    (cr(conditions=conds("Created", "Running", "Succeeded")), FINISHED),
    (cr(conditions=conds("Created", "Failed")), FAILED),
    (cr(conditions=[{"type": "Running", "status": "False"}]), STARTING),
    (cr("Job", "batch.volcano.sh/v1alpha1", state={"phase": "Pending"}), STARTING),
    (cr("Job", "batch.volcano.sh/v1alpha1", state={"phase": "Running"}), RUNNING),
    (cr("Job", "batch.volcano.sh/v1alpha1", state={"phase": "Completed"}), FINISHED),
    (cr("Job", "batch.volcano.sh/v1alpha1", state={"phase": "Aborted"}), FAILED),
    (cr("JobSet", "jobset.x-k8s.io/v1alpha2", replicatedJobsStatus=[{"name": "w", "ready": 1}]), RUNNING),
    (cr("JobSet", "jobset.x-k8s.io/v1alpha2", conditions=conds("Completed")), FINISHED),
])
def test_custom_resource_states(obj, state):
    assert workload_status(obj).state == state


def test_failed_message_names_the_object():
    st = workload_status(job([("Failed", "True", "BackoffLimitExceeded")]))
    assert "Job j failed" in st.message and "BackoffLimitExceeded" in st.message


def test_pod_warnings():
    pod = {"metadata": {"name": "p"}, "status": {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}],
        "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "ImagePullBackOff",
                                                                  "message": "Back-off pulling image"}}}]}}
    warnings = pod_warnings(pod)
    assert len(warnings) == 2
    assert "Unschedulable" in warnings[0] and "Insufficient nvidia.com/gpu" in warnings[0]
    assert "ImagePullBackOff" in warnings[1]
    assert pod_warnings(pod) == warnings  # stable text: reported once
    assert not pod_running(pod)
    assert pod_running({"status": {"phase": "Running"}})
    assert pod_warnings({"metadata": {"name": "q"}, "status": {"phase": "Running"}}) == []


def test_event_warnings():
    from agent.controller.status import event_warnings

    events = [
        {"type": "Warning", "reason": "FailedCreate", "message": 'pods "x" is forbidden: exceeded quota: q',
         "involvedObject": {"kind": "Job", "name": "j"}},
        {"type": "Normal", "reason": "SuccessfulCreate", "message": "Created pod", "involvedObject": {}},
    ]
    assert event_warnings(events) == ['Job j: FailedCreate: pods "x" is forbidden: exceeded quota: q']


def test_a_job_whose_first_pod_failed_has_started():
    """backoffLimit > 0: the retry pod is Pending again, but a pod of this Job has run."""
    from agent.controller.status import ever_started

    retrying = job(failed=1, active=1)
    pending_retry = {"status": {"phase": "Pending"}}
    assert workload_status(retrying).state == STARTING
    assert ever_started(retrying, [pending_retry])
    assert not ever_started(job(active=1), [pending_retry])
    assert ever_started(job(), [{"status": {"phase": "Running"}}])
    assert ever_started(cr(conditions=[{"type": "Running", "status": "False"}]), [])
    assert not ever_started(cr(conditions=conds("Created")), [])
    assert ever_started(cr("Job", "batch.volcano.sh/v1alpha1", state={"phase": "Restarting"}), [])


def test_suspended_workloads_and_their_start_clock():
    from agent.controller.status import start_clock, suspended

    held = {**job(), "spec": {"suspend": True}}
    assert suspended(held) and not suspended(job())
    assert suspended({"spec": {"runPolicy": {"suspend": True}}})
    # resumed a moment ago: the Job controller has not flipped its Suspended condition yet
    assert suspended({"spec": {"suspend": False}, "status": {"conditions": [{"type": "Suspended", "status": "True"}]}})
    resumed = {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}, "status": {"conditions": [
        {"type": "Suspended", "status": "False", "reason": "JobResumed", "lastTransitionTime": "2026-01-01T01:00:00Z"}]}}
    assert start_clock(resumed).hour == 1
    assert start_clock({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}).hour == 0


def test_pod_disruptions_are_recognised():
    from agent.kube.watch import pod_disruption

    def pod(reason, status="True"):
        return {"metadata": {"name": "p"}, "status": {"phase": "Running", "conditions": [
            {"type": "DisruptionTarget", "status": status, "reason": reason, "message": "m"}]}}

    for reason in ("EvictionByEvictionAPI", "PreemptionByScheduler", "TerminationByKubelet", "DeletionByTaintManager",
                   "DeletionByPodGC"):
        assert pod_disruption(pod(reason)) == f"pod p: {reason}: m"
    assert pod_disruption(pod("EvictionByEvictionAPI", "False")) is None
    assert pod_disruption(pod("SomethingElse")) is None


def test_init_container_failures_say_why():
    """The init container of a code job that cannot fetch its source ends with one line (its termination
    message); that line is what the item's failure says."""
    line = "fetch-source: git remote https://git.example/r.git is unreachable (ConnectError)"
    failed = {"metadata": {"name": "p-1"}, "status": {"phase": "Failed", "initContainerStatuses": [
        {"name": "wandb-source-code-init", "state": {"terminated": {"exitCode": 1, "reason": "Error",
                                                                   "message": line + "\n"}}}]}}
    assert init_failures([failed]) == [f"pod p-1 init container wandb-source-code-init exited 1: {line}"]
    retried = {"metadata": {"name": "p-2"}, "status": {"initContainerStatuses": [
        {"name": "fetch", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}}
    assert init_failures([retried, retried]) == ["pod p-2 init container fetch exited 2: Error"]
    done = {"metadata": {"name": "p-3"}, "status": {"initContainerStatuses": [
        {"name": "wandb-source-code-init", "state": {"terminated": {"exitCode": 0, "message": "fetched"}}}]}}
    assert init_failures([done, {"metadata": {"name": "p-4"}, "status": {}}]) == []
