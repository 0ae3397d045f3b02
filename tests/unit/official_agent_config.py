"""The official agent's verdict on an agent config file, from its own code (wandb 0.31.0).

`official_verdict(text)` runs what `wandb launch-agent -c FILE` runs before it talks to W&B
about queues: `resolve_agent_config` (the file read with PyYAML, env and flag overrides), the
CLI's non-empty-queues check, then `create_and_run_agent`, which validates with the pydantic
`AgentConfig` and constructs `LaunchAgent` (its `max_jobs`/`max_schedulers` parsing and the
verbosity logger). The W&B API is a stub: constructing the agent stops at the first call to
the backend (`create_launch_agent`), which is where a correct config is known to have started.
Warnings the agent prints on the way (`wandb.termwarn`) are collected.

`official_job_loader_error(config)` runs the per-job loaders (environment, registry, builder)
the agent calls before every run, with cloud credentials out of reach; it says whether the
config would fail every run for a reason that has nothing to do with credentials.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

warnings.filterwarnings("ignore", module="pydantic")

import wandb  # noqa: E402
from wandb.sdk.launch import _launch  # noqa: E402
from wandb.sdk.launch.agent import agent as agent_module  # noqa: E402
from wandb.sdk.launch.errors import LaunchError  # noqa: E402


class _Started(Exception):
    """Raised by the stub API when the agent asks W&B to register it: the config was accepted."""


class _StubApi:
    """The part of LaunchApi the agent touches before registering with W&B."""

    default_entity = "viewer-entity"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.settings = {"base_url": "http://127.0.0.1:9"}

    def create_launch_agent(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise _Started


@dataclass
class Verdict:
    accepted: bool
    error: str = ""
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _clean_env() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in ("WANDB_ENTITY", "WANDB_LAUNCH_MAX_JOBS") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def official_verdict(text: str) -> Verdict:
    """Would `wandb launch-agent -c FILE` start with a file of this text?"""
    said: list[str] = []
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, _clean_env(), \
            mock.patch("wandb.sdk.launch.api.LaunchApi", _StubApi), \
            mock.patch.object(wandb, "termwarn", lambda msg, *a, **k: said.append(str(msg))), \
            mock.patch.object(wandb, "termerror", lambda msg, *a, **k: errors.append(str(msg))), \
            mock.patch.object(wandb, "termlog", lambda *a, **k: None):
        path = os.path.join(tmp, "launch-config.yaml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        agent_module.LaunchAgent._instance = None
        try:
            config, api = _launch.resolve_agent_config(None, None, None, path, None)
            if len(config.get("queues")) == 0:  # cli.py: launch_agent
                raise LaunchError("no queues")
            _launch.create_and_run_agent(api, config)
        except _Started:
            return Verdict(True, warnings=said)
        except Exception as exc:  # the agent exits with this error
            return Verdict(False, "; ".join(errors) or f"{type(exc).__name__}: {exc}", said)
        finally:
            agent_module.LaunchAgent._instance = None
    return Verdict(False, "the agent returned without registering", said)


def official_job_loader_error(config: dict[str, Any]) -> str | None:
    """The error every run of this agent config fails with in the official per-job loaders
    (environment, registry, builder; agent.py `_task_run_job`), or None when they pass or fail
    only for want of cloud credentials."""
    from wandb.sdk.launch import loader
    from wandb.sdk.launch.agent.agent import construct_agent_configs
    from wandb.sdk.launch.environment.local_environment import LocalEnvironment

    env_config = config.get("environment") or {}
    with mock.patch.object(wandb, "termwarn", lambda *a, **k: None), \
            mock.patch("wandb.sdk.launch.agent.agent.os.path.exists", return_value=False):
        if env_config and not env_config.get("type"):
            try:
                loader.environment_from_config(env_config)
            except LaunchError as exc:
                return str(exc)
        _, build_config, registry_config = construct_agent_configs(config, None)
        try:
            registry = loader.registry_from_config(registry_config, LocalEnvironment())
        except LaunchError as exc:
            return str(exc)
        except Exception:  # a cloud client without credentials: not a config error
            return None
        try:
            loader.builder_from_config(build_config, LocalEnvironment(), registry)
        except LaunchError as exc:
            return str(exc)
        except Exception:
            return None
    return None
