"""What a build Job says (pure): still building, built, or failed and why; warnings in its log."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agent.build.install_frozen import PREFIX, SUFFIX

BUILDING, BUILT, FAILED = "building", "built", "failed"
LOG_LINES = 15  # the build's last lines in a failure message
_FAILED_PACKAGES = re.compile(re.escape(PREFIX) + r"(.*?)" + re.escape(SUFFIX))
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class BuildState:
    state: str
    reason: str = ""


def job_state(job: dict[str, Any]) -> BuildState:
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return BuildState(BUILT)
        if cond.get("type") in ("Failed", "FailureTarget"):
            return BuildState(FAILED, str(cond.get("message") or cond.get("reason") or "the build Job failed"))
    if int(status.get("succeeded") or 0) >= 1:
        return BuildState(BUILT)
    return BuildState(BUILDING)


def tail(log: str, lines: int = LOG_LINES) -> list[str]:
    clean = [_ANSI.sub("", ln).rstrip() for ln in log.splitlines()]
    return [ln for ln in clean if ln.strip()][-lines:]


def failure_message(image_uri: str, job_name: str, namespace: str, reason: str, log: str) -> str:
    head = f"building {image_uri} failed ({reason}; Job {namespace}/{job_name})"
    last = tail(log)
    return head + (":\n" + "\n".join(last) if last else "")


def failed_packages(log: str) -> list[str]:
    match = _FAILED_PACKAGES.search(log)
    return [p for p in match.group(1).split(",") if p] if match else []


def packages_warning(image_uri: str, packages: list[str]) -> str:
    return (f"Some packages were not installed while building {image_uri}: {', '.join(packages)}; "
            "the run uses the image without them")
