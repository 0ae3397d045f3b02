"""Telling agent configs, queue configs and values files apart by their keys."""

from __future__ import annotations

from typing import Any

VALUES_KEYS = frozenset({"launchConfig", "agent", "rbac", "serviceAccount", "additionalTargetNamespaces", "baseUrl",
                         "replicas", "gitCreds", "customCABundle"})
CONFIG_KEYS = frozenset({"queues", "queue", "entity", "max_jobs", "max_schedulers", "builder", "environment",
                         "registry", "secure_mode", "verbosity", "stopped_run_timeout"})
QUEUE_KEYS = frozenset({"kubernetes", "spec", "apiVersion", "kind", "metadata"})
FLAGS = {"launch-config": "-c", "queue-config": "-q", "values": "--update"}
NAMES = {"launch-config": "an agent config", "queue-config": "a queue config", "values": "a values file"}


def detect(data: Any) -> str | None:
    """launch-config, queue-config, values, or None when the keys say nothing."""
    if not isinstance(data, dict):
        return None
    keys = {str(k) for k in data}
    if keys & VALUES_KEYS:
        return "values"
    if keys & CONFIG_KEYS:
        return "launch-config"
    if keys & QUEUE_KEYS or "namespace" in keys:
        return "queue-config"
    return None


def mixup(data: Any, expected: str) -> str | None:
    """A one-line hint when a file given as `expected` is plainly another kind, else None."""
    found = detect(data)
    if found is None or found == expected:
        return None
    return f"this looks like {NAMES[found]}, not {NAMES[expected]}; give it with {FLAGS[found]}"
