"""Metadata the agent writes on every object and pod template: identity labels and annotations,
user labels made valid, label and annotation keys checked the way the API server checks them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.manifest.errors import ManifestError
from agent.manifest.macros import RunInfo
from agent.manifest.names import (
    ANN_ENTITY,
    ANN_ITEM_ID,
    ANN_PROJECT,
    ANN_QUEUE,
    ANN_RUN_ID,
    ANN_RUN_NAME,
    LABEL_ITEM,
    LABEL_MONITOR,
    LABEL_QUEUE,
    LABEL_ROLE,
    LABEL_RUN_ID,
    identity_labels,
    item_label,
    label_value,
)
from agent.manifest.settings import ManifestSettings

_KEY_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ANNOTATIONS_MAX_BYTES = 256 * 1024


def valid_key(key: str) -> bool:
    """A label or annotation key: an optional DNS-subdomain prefix (<= 253) and `/`, then a name of
    at most 63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_KEY_NAME.match(name))


def label_set(run: RunInfo, item_id: str, queue: str, settings: ManifestSettings, role: str) -> dict[str, str]:
    labels = {str(k): label_value(v) for k, v in settings.extra_labels.items()}
    labels.update(identity_labels(settings))
    labels.update({
        LABEL_MONITOR: "true",
        LABEL_RUN_ID: label_value(run.run_id),
        LABEL_QUEUE: label_value(queue),
        LABEL_ITEM: item_label(item_id),
        LABEL_ROLE: role,
    })
    return labels


def annotation_set(run: RunInfo, item_id: str, queue: str) -> dict[str, str]:
    ann = {ANN_ITEM_ID: item_id, ANN_RUN_ID: run.run_id, ANN_QUEUE: queue,
           ANN_ENTITY: run.entity, ANN_PROJECT: run.project}
    if run.run_name:
        ann[ANN_RUN_NAME] = run.run_name
    return ann


def metadata_of(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """obj's metadata, created when absent or null; ManifestError when it is not an object."""
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise ManifestError("metadata", f"{where}.metadata must be an object")
    return meta


def _user_map(meta: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = meta.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ManifestError("metadata", f"{where}.metadata.{key} must be an object")
    for k in value:
        if not valid_key(str(k)):
            raise ManifestError("metadata", f"{where}.metadata.{key}: {str(k)[:80]!r} is not a valid key "
                                            "(an optional DNS prefix and '/', then at most 63 of A-Z a-z 0-9 - _ .)")
    return value


def stamp(meta: dict[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str] | None,
          where: str) -> None:
    """Write the agent's labels (and annotations) over the user's, the user's made valid."""
    user_labels = {str(k): label_value(v) for k, v in _user_map(meta, "labels", where).items()}
    meta["labels"] = {**user_labels, **labels}
    user_ann = _user_map(meta, "annotations", where)
    if annotations is not None or user_ann:
        merged = {str(k): "" if v is None else str(v) for k, v in user_ann.items()}
        merged.update(annotations or {})
        if sum(len(k) + len(v) for k, v in merged.items()) > _ANNOTATIONS_MAX_BYTES:
            raise ManifestError("metadata", f"{where}.metadata.annotations are larger than 256 KiB")
        meta["annotations"] = merged
