"""The API server's audit log as the benchmarks' source of truth for Kubernetes-side figures:
every request an agent sent (counted, not estimated) and when each workload was created and
finished, to the microsecond, as the API server saw it.

The policy logs, at `Metadata` level, the requests of the benchmark's ServiceAccounts, and at
`Request` level the job controller's Job status writes (the condition that says a Job ended)
and kwok's pod status writes (the phase that says a pod ended).
Everything else (kwok, the scheduler, the other controllers) is not logged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"
KWOK = "localenv-kwok"  # plays the kubelet: writes each pod's phase


def write_policy(path: Path) -> Path:
    """Log the benchmark's ServiceAccounts (every namespace but kube-system), the job controller's
    Job status writes and kwok's pod status writes; nothing else."""
    agents = ["system:serviceaccounts"]
    policy = {
        "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "Request", "users": [JOB_CONTROLLER], "verbs": ["update", "patch"],
             "resources": [{"group": "batch", "resources": ["jobs/status"]}]},
            {"level": "Request", "users": [KWOK], "verbs": ["update", "patch"],
             "resources": [{"group": "", "resources": ["pods/status"]}]},
            {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
            # Workload creates with their answer: the name the API server gave (generateName) and labels.
            {"level": "RequestResponse", "userGroups": agents, "verbs": ["create"],
             "resources": [{"group": "batch", "resources": ["jobs"]},
                           {"group": "kubeflow.org", "resources": ["pytorchjobs"]}]},
            {"level": "Metadata", "userGroups": agents},
            {"level": "None"},
        ],
    }
    path.write_text(yaml.safe_dump(policy))
    return path


def apiserver_args(policy: Path, log: Path) -> list[str]:
    return [f"--audit-policy-file={policy}", f"--audit-log-path={log}", "--audit-log-format=json",
            "--audit-log-maxsize=0", "--audit-log-mode=blocking"]


def size(path: Path) -> int:
    """Bytes written so far: where the events of something that starts now begin."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Tail:
    """The events of a growing audit log from byte `offset` on: each `read` parses only what was
    written since the last one (a torn last line, still being written, waits for the next read)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset

    def read(self) -> list[dict[str, Any]]:
        """The events written since the last read."""
        out = []
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as handle:
            handle.seek(self.offset)
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                self.offset += len(line)
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


def timestamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def requests_of(events: Iterable[dict[str, Any]], user: str, since: float = 0.0,
                until: float = float("inf")) -> list[dict[str, Any]]:
    """One event per request of `user` received in [since, until): its final stage, or the
    ResponseStarted of a watch still open."""
    by_id: dict[str, dict[str, Any]] = {}
    for e in events:
        if (e.get("user") or {}).get("username") != user:
            continue
        received = timestamp(e["requestReceivedTimestamp"])
        if not since <= received < until:
            continue
        if e["auditID"] not in by_id or e.get("stage") in ("ResponseComplete", "Panic"):
            by_id[e["auditID"]] = e
    return list(by_id.values())


def verbs(requests: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Requests by `verb resource` (watches and lists told apart), for the JSON breakdown."""
    counts: Counter[str] = Counter()
    for e in requests:
        ref = e.get("objectRef") or {}
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        counts[f"{e.get('verb')} {resource or e.get('requestURI', '')}"] += 1
    return dict(sorted(counts.items()))


def created(events: Iterable[dict[str, Any]], user: str, resource: str, label: str = "wandb.ai/run-id") -> dict[str, float]:
    """run id (the workload's `label`) -> when the API server answered its create with 201."""
    out: dict[str, float] = {}
    for e in events:
        ref = e.get("objectRef") or {}
        if (e.get("stage") == "ResponseComplete" and e.get("verb") == "create" and ref.get("resource") == resource
                and not ref.get("subresource") and (e.get("user") or {}).get("username") == user
                and (e.get("responseStatus") or {}).get("code") == 201):
            meta = (e.get("responseObject") or {}).get("metadata") or {}
            run_id = (meta.get("labels") or {}).get(label)
            if run_id:
                out.setdefault(run_id, timestamp(e["stageTimestamp"]))
    return out


def created_names(events: Iterable[dict[str, Any]], user: str, resource: str,
                  label: str = "wandb.ai/run-id") -> dict[str, str]:
    """run id -> name of the workload `user` created for it."""
    out: dict[str, str] = {}
    for e in events:
        if (e.get("verb") == "create" and (e.get("objectRef") or {}).get("resource") == resource
                and (e.get("user") or {}).get("username") == user and (e.get("responseStatus") or {}).get("code") == 201):
            meta = (e.get("responseObject") or {}).get("metadata") or {}
            run_id = (meta.get("labels") or {}).get(label)
            if run_id and meta.get("name"):
                out.setdefault(run_id, meta["name"])
    return out


def names(events: Iterable[dict[str, Any]], user: str, resource: str) -> set[str]:
    """Names of the workloads `user` created."""
    return {((e.get("responseObject") or {}).get("metadata") or {}).get("name", "") for e in events
            if e.get("verb") == "create" and (e.get("objectRef") or {}).get("resource") == resource
            and (e.get("user") or {}).get("username") == user and (e.get("responseStatus") or {}).get("code") == 201}


def jobs_finished(events: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Job name -> when the job controller wrote its Complete or Failed condition."""
    out: dict[str, float] = {}
    for e in events:
        if (e.get("user") or {}).get("username") != JOB_CONTROLLER or e.get("stage") != "ResponseComplete":
            continue
        ref = e.get("objectRef") or {}
        status = ((e.get("requestObject") or {}).get("status") or {})
        ended = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                    for c in status.get("conditions") or [])
        if ended and ref.get("name") and (e.get("responseStatus") or {}).get("code") == 200:
            out.setdefault(ref["name"], timestamp(e["stageTimestamp"]))
    return out


def pods_finished(events: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Pod name -> when its phase was first written as Succeeded or Failed (kwok, as a kubelet)."""
    out: dict[str, float] = {}
    for e in events:
        if (e.get("user") or {}).get("username") != KWOK or e.get("stage") != "ResponseComplete":
            continue
        phase = (((e.get("requestObject") or {}).get("status")) or {}).get("phase")
        name = (e.get("objectRef") or {}).get("name")
        if phase in ("Succeeded", "Failed") and name and (e.get("responseStatus") or {}).get("code") == 200:
            out.setdefault(name, timestamp(e["stageTimestamp"]))
    return out


def workloads_finished(events: list[dict[str, Any]], jobs: Iterable[str]) -> dict[str, float]:
    """Job name -> when it ended: its first pod ending, or its Failed/Complete condition if earlier."""
    by_job = jobs_finished(events)
    wanted = set(jobs)
    for pod, when in pods_finished(events).items():
        job = pod.rsplit("-", 1)[0]
        if job in wanted:
            by_job[job] = min(when, by_job.get(job, when))
    return {j: t for j, t in by_job.items() if j in wanted}
