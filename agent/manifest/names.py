"""Object names, labels and annotations: deterministic per run-queue item, DNS-1123 safe, at most
63 characters; the identity labels are also the agent's list/watch selector."""

from __future__ import annotations

import hashlib
import re

from agent.manifest.errors import ManifestError
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


_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def object_name(kind: str, given: object, fallback: str, *, salt: str = "") -> str:
    """The name of an object of *kind*: the user's (made DNS-1123 safe) or one derived from *fallback*.

    A Service name is a DNS-1035 label (it becomes a DNS name and an env var prefix): a user's
    name that is not one is refused rather than silently changed; a derived one gets an `s-`
    prefix when it would start with a digit.
    """
    if kind == "Service":
        if given:
            text = str(given)
            if len(text) > _DNS_LABEL_MAX or not _DNS1035.match(text):
                raise ManifestError("name", f"Service name {text[:80]!r} is not valid: at most 63 lower-case "
                                            "letters, digits and '-', starting with a letter and not ending with '-'")
            return text
        name = dns_name(fallback, salt=salt)
        return name if name[0].isalpha() else dns_name(f"s-{name}", salt=salt)
    return dns_name(str(given)) if given else dns_name(fallback, salt=salt)
