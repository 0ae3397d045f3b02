"""How tests start our agent as a process (`python -m agent`): its environment and command line,
shared by the agent e2e tests and the fault suite. Each caller passes its own settings (poll
interval, timeouts, workload kinds) and a test's overrides on top."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path


def agent_env(*, home: Path, api_key: str, base_url: str, release: str, agent_ns: str, jobs_ns: str,
              pod_name: str, poll_interval: str, settings: Mapping[str, str] | None = None,
              overrides: Mapping[str, str] | None = None, pythonpath: str | None = None) -> dict[str, str]:
    """The agent's environment for one install: W&B emulator, release name, its own namespace and
    targets (its own + the jobs namespace); then `settings`, then `overrides`; `PYTHONPATH` last
    when given (an agent from another checkout)."""
    env = {
        "PATH": os.environ["PATH"], "HOME": str(home),
        "WANDB_API_KEY": api_key, "WANDB_BASE_URL": base_url,
        "WANDB_RELEASE_NAME": release, "LAUNCH_AGENT_NAMESPACE": agent_ns,
        "LAUNCH_AGENT_TARGET_NAMESPACES": f"{agent_ns},{jobs_ns}",
        "LAUNCH_AGENT_POLL_INTERVAL": poll_interval, "LAUNCH_AGENT_POD_NAME": pod_name,
        **(settings or {}),
        **(overrides or {}),
    }
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def agent_command(config: Path, kubeconfig: Path, python: str = sys.executable) -> list[str]:
    """`python -m agent` with the launch config and kubeconfig, health endpoints on a free port."""
    return [python, "-m", "agent", "-c", str(config), "--kubeconfig", str(kubeconfig), "--health-port", "0"]
