"""The env vars of launched containers; the API key only as a secretKeyRef."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from agent.manifest.macros import RunInfo
from agent.manifest.settings import ManifestSettings

_ENV_CHUNK = 32670


def _chunked(name: str, payload: str) -> list[dict[str, Any]]:
    if len(payload) <= _ENV_CHUNK:
        return [{"name": name, "value": payload}]
    return [{"name": f"{name}_{i}", "value": payload[o:o + _ENV_CHUNK]}
            for i, o in enumerate(range(0, len(payload), _ENV_CHUNK))]


def run_env(run_spec: Mapping[str, Any], run: RunInfo, *, item_id: str, queue: str,
            settings: ManifestSettings, key_secret: str | None = None) -> list[dict[str, Any]]:
    """The env vars a launched container gets; the API key only as a secretKeyRef (to the run's own
    Secret, `key_secret`, when the run carries a per-user key)."""
    overrides = run_spec.get("overrides") or {}
    env: list[dict[str, Any]] = [
        {"name": "WANDB_BASE_URL", "value": settings.base_url},
        {"name": "WANDB_API_KEY",
         "valueFrom": {"secretKeyRef": {"name": key_secret or settings.api_key_secret, "key": "password"}}},
    ]
    if run.project:
        env.append({"name": "WANDB_PROJECT", "value": run.project})
    env += [
        {"name": "WANDB_ENTITY", "value": run.entity},
        {"name": "WANDB_LAUNCH", "value": "True"},
        {"name": "WANDB_RUN_ID", "value": run.run_id},
    ]
    if run.image_uri and run.prebuilt:
        env.append({"name": "WANDB_DOCKER", "value": run.image_uri})
    if run.run_name:
        env.append({"name": "WANDB_NAME", "value": run.run_name})
    if run.author and not key_secret:  # like the official agent: a per-user key names its own user
        env.append({"name": "WANDB_USERNAME", "value": run.author})
    sweep_id = run_spec.get("sweep_id")
    if sweep_id and isinstance(sweep_id, str):
        env.append({"name": "WANDB_SWEEP_ID", "value": sweep_id})
    resume = run_spec.get("_resume_count")
    if isinstance(resume, int | float | str) and str(resume).strip().lstrip("-").isdigit() and int(resume) > 0:
        env.append({"name": "WANDB_RESUME", "value": "allow"})
    env += [
        {"name": "WANDB_LAUNCH_QUEUE_NAME", "value": queue},
        {"name": "WANDB_LAUNCH_QUEUE_ENTITY", "value": settings.queue_entity or run.entity},
        {"name": "WANDB_LAUNCH_TRACE_ID", "value": item_id},
    ]
    run_config = overrides.get("run_config") if isinstance(overrides, Mapping) else None
    env += _chunked("WANDB_CONFIG", json.dumps(run_config or {}))  # "{}" too, like the official agent
    files = overrides.get("files") if isinstance(overrides, Mapping) else None
    env += _chunked("WANDB_LAUNCH_FILE_OVERRIDES", json.dumps(files or {}))
    artifacts = dict(overrides.get("artifacts") or {}) if isinstance(overrides, Mapping) else {}
    if run_spec.get("job"):
        artifacts = {"_wandb_job": run_spec["job"], **artifacts}
    env += _chunked("WANDB_ARTIFACTS", json.dumps(artifacts))
    return env


def merge_env(container: dict[str, Any], env: list[dict[str, Any]]) -> None:
    ours = {e["name"] for e in env}
    kept = [e for e in container.get("env") or [] if isinstance(e, dict) and e.get("name") not in ours]
    container["env"] = kept + copy.deepcopy(env)
