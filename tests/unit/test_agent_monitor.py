"""agent.controller.status: workload state from Job conditions and custom-resource conventions, pod warnings."""

from __future__ import annotations

import pytest

from agent.controller.status import (
    FAILED,
    FINISHED,
    RUNNING,
    STARTING,
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
