"""Object names, labels and annotations: deterministic per run-queue item, DNS-1123 safe, at most
63 characters; the identity labels are also the agent's list/watch selector."""

from __future__ import annotations

import hashlib
import re

from agent.manifest.macros import RunInfo
from agent.manifest.settings import ManifestSettings

LABEL_AGENT = "wandb.ai/agent"
LABEL_MONITOR = "wandb.ai/monitor"
LABEL_RUN_ID = "wandb.ai/run-id"
LABEL_QUEUE = "wandb.ai/queue"
LABEL_ITEM = "wandb.ai/run-queue-item"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_ROLE = "launch-agent.wandb.ai/role"
MANAGED_BY = "launch-agent"
ANN_ITEM_ID = "wandb.ai/run-queue-item-id"
ANN_RUN_ID = "wandb.ai/run-id"
ANN_QUEUE = "wandb.ai/queue"
ANN_ENTITY = "wandb.ai/entity"
ANN_PROJECT = "wandb.ai/project"
ANN_RUN_NAME = "wandb.ai/run-name"

_DNS_LABEL_MAX = 63


def short_hash(*parts: str, length: int = 6) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return digest[:length]


def dns_name(text: str, *, max_len: int = _DNS_LABEL_MAX, salt: str = "") -> str:
    """A DNS-1123 label from any text: lower case, digits kept, `-` for everything else.

    When the cleaned text is longer than `max_len` (or empty) it is cut and suffixed with a
    hash of the original, so distinct inputs stay distinct.
    """
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip("-")
    if cleaned and len(cleaned) <= max_len:
        return cleaned
    suffix = short_hash(text, salt)
    head = cleaned[: max_len - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}" if head else f"x-{suffix}"


def label_value(text: str) -> str:
    """A valid label value: at most 63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text))
    cleaned = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)
    if cleaned == str(text) and len(cleaned) <= _DNS_LABEL_MAX:
        return cleaned
    suffix = short_hash(str(text))
    head = re.sub(r"[^A-Za-z0-9]+$", "", cleaned[: _DNS_LABEL_MAX - len(suffix) - 1])
    return f"{head}-{suffix}" if head else suffix


def item_label(item_id: str) -> str:
    """The label value for a run-queue item id (ids are base64 and may hold `=`, `+`, `/`)."""
    return label_value(item_id)


def workload_name(run: RunInfo, item_id: str) -> str:
    """Deterministic per run-queue item: `<project>-<run id>-<hash of item id>`."""
    suffix = short_hash(item_id)
    base = dns_name(f"{run.project}-{run.run_id}", max_len=_DNS_LABEL_MAX - len(suffix) - 1)
    return f"{base}-{suffix}"


def identity_labels(settings: ManifestSettings) -> dict[str, str]:
    """The labels on every object this agent creates; also its watch/list selector."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_AGENT: label_value(settings.agent_identity)}


def selector(settings: ManifestSettings) -> str:
    return ",".join(f"{k}={v}" for k, v in identity_labels(settings).items())
