"""Pure: the state of a workload (Job conditions, custom-resource conventions) and the warnings of its
pods and events, as stable texts so each is reported once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

STARTING, RUNNING, FINISHED, FAILED, STOPPED = "starting", "running", "finished", "failed", "stopped"
TERMINAL = frozenset({FINISHED, FAILED, STOPPED})

_PHASES = {
    "pending": STARTING, "created": STARTING, "inqueue": STARTING,
    "running": RUNNING, "completing": RUNNING, "restarting": RUNNING,
    "succeeded": FINISHED, "completed": FINISHED, "complete": FINISHED,
    "failed": FAILED, "aborted": FAILED, "timeout": FAILED, "terminated": FAILED, "failuretarget": FAILED,
}
_PRIORITY = (FINISHED, FAILED, RUNNING, STARTING)
_WAITING_WARNINGS = frozenset({"ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "InvalidImageName",
                               "CreateContainerConfigError", "CreateContainerError"})


@dataclass(frozen=True)
class Status:
    state: str
    message: str = ""


def _true_conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return [c for c in conds if isinstance(c, dict) and str(c.get("status")) == "True"]


def job_status(job: dict[str, Any]) -> Status:
    """batch/v1 Job: terminal only from the Complete/Failed conditions (which honour completions
    and backoffLimit); running once a pod is ready."""
    for cond in _true_conditions(job):
        ctype = cond.get("type")
        if ctype in ("Complete", "SuccessCriteriaMet"):
            return Status(FINISHED)
        if ctype in ("Failed", "FailureTarget"):
            reason = cond.get("reason") or "Failed"
            return Status(FAILED, f"Job {job['metadata']['name']} failed: {reason}: {cond.get('message', '')}"
                          .rstrip(": "))
    status = job.get("status") or {}
    if int(status.get("ready") or 0) > 0 or int(status.get("succeeded") or 0) > 0:
        return Status(RUNNING)
    return Status(STARTING)


def custom_status(obj: dict[str, Any]) -> Status:
    """Custom resources by their conventions: Volcano `status.state.phase`, Kubeflow/JobSet
    conditions, JobSet `replicatedJobsStatus`."""
    status = obj.get("status") or {}
    name = f"{obj.get('kind', 'object')} {obj.get('metadata', {}).get('name', '')}"
    state = status.get("state")
    if isinstance(state, dict) and state.get("phase"):
        mapped = _PHASES.get(str(state["phase"]).lower())
        if mapped:
            msg = f"{name} {state['phase']}: {state.get('message', '')}".rstrip(": ") if mapped == FAILED else ""
            return Status(mapped, msg)
    found: dict[str, dict[str, Any]] = {}
    for cond in _true_conditions(obj):
        mapped = _PHASES.get(str(cond.get("type", "")).lower())
        if mapped:
            found.setdefault(mapped, cond)
    for state_name in _PRIORITY:
        if state_name in found:
            cond = found[state_name]
            msg = ""
            if state_name == FAILED:
                msg = f"{name} failed: {cond.get('reason', '')}: {cond.get('message', '')}".rstrip(": ")
            return Status(state_name, msg)
    rjs = status.get("replicatedJobsStatus")
    if isinstance(rjs, list) and any(int(r.get("ready") or 0) or int(r.get("active") or 0) for r in rjs):
        return Status(RUNNING)
    return Status(STARTING)


def workload_status(obj: dict[str, Any]) -> Status:
    if obj.get("apiVersion", "").startswith("batch/") and obj.get("kind") == "Job":
        return job_status(obj)
    return custom_status(obj)


def event_warnings(events: list[dict[str, Any]]) -> list[str]:
    """Warning events of a workload that keep its pods from existing (quota, admission, ...)."""
    out = []
    for ev in events:
        if ev.get("type") == "Warning" and ev.get("reason") in ("FailedCreate", "FailedScheduling"):
            kind = (ev.get("involvedObject") or {}).get("kind", "")
            name = (ev.get("involvedObject") or {}).get("name", "")
            out.append(f"{kind} {name}: {ev.get('reason')}: {ev.get('message', '')}".rstrip(": "))
    return out


def pod_running(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Running", "Succeeded")


def pod_warnings(pod: dict[str, Any]) -> list[str]:
    """Human-actionable problems of one pod, stable texts so each is reported once."""
    out: list[str] = []
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and \
                cond.get("reason") == "Unschedulable":
            out.append(f"pod {name} is Unschedulable: {cond.get('message', '')}".rstrip(": "))
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in _WAITING_WARNINGS:
                out.append(f"pod {name} container {cs.get('name', '')}: {reason}: {waiting.get('message', '')}"
                           .rstrip(": "))
    if status.get("phase") == "Failed" and status.get("reason") in ("Evicted", "Preempting"):
        out.append(f"pod {name} was {status.get('reason')}: {status.get('message', '')}".rstrip(": "))
    return out


def _parse_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def suspended(obj: dict[str, Any]) -> bool:
    """Held back on purpose (Kueue, a user): Job `spec.suspend`, JobSet `spec.suspend`, Kubeflow
    `spec.runPolicy.suspend`. The start timeout never applies to a suspended workload."""
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        return False
    run_policy = spec.get("runPolicy") if isinstance(spec.get("runPolicy"), dict) else {}
    if spec.get("suspend") is True or run_policy.get("suspend") is True:
        return True
    # Just resumed, but its controller has not said so yet: the start clock is not known yet.
    return any(isinstance(c, dict) and c.get("type") == "Suspended" and str(c.get("status")) == "True"
               for c in ((obj.get("status") or {}).get("conditions") or []))


def ever_started(obj: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """Whether any pod of the workload has ever run: the start timeout applies only until then.

    A Job that counted a failed or succeeded pod has run one (its retry pod may be Pending again);
    a custom resource that has a Running condition (true or not any more) or a phase past pending
    has started; a pod that is running or finished counts for every kind."""
    if any((p.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed") for p in pods):
        return True
    status = obj.get("status") or {}
    if not isinstance(status, dict):
        return False
    if obj.get("apiVersion", "").startswith("batch/") and obj.get("kind") == "Job":
        return any(int(status.get(k) or 0) > 0 for k in ("failed", "succeeded", "ready"))
    conds = status.get("conditions") or []
    if any(isinstance(c, dict) and str(c.get("type", "")).lower() == "running" for c in conds):
        return True
    state = status.get("state")
    if isinstance(state, dict) and state.get("phase"):
        return _PHASES.get(str(state["phase"]).lower(), STARTING) != STARTING
    return workload_status(obj).state != STARTING


def start_clock(obj: dict[str, Any]) -> dt.datetime | None:
    """When the start timeout began to run: creation, or the moment a suspended Job was resumed."""
    started = _parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    for cond in ((obj.get("status") or {}).get("conditions") or []):
        if isinstance(cond, dict) and cond.get("type") == "Suspended" and str(cond.get("status")) == "False":
            resumed = _parse_time(cond.get("lastTransitionTime"))
            if resumed and (started is None or resumed > started):
                started = resumed
    return started


def init_failures(pods: list[dict[str, Any]]) -> list[str]:
    """Why a pod's init container failed (the code fetch of a code or git job, say), from its
    termination message (the fetcher's one line, or the log's tail), one text per container."""
    out = []
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
            if term and term.get("exitCode") not in (None, 0):
                message = " ".join(str(term.get("message") or term.get("reason") or "").split())[-500:]
                out.append(f"pod {name} init container {cs.get('name', '')} exited {term['exitCode']}"
                           + (f": {message}" if message else ""))
    return list(dict.fromkeys(out))
