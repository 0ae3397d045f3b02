"""The Secrets a launched pod may reference: the API-key Secret and those on the allowlist
(`ManifestSettings.allowed_secrets`, the chart's `agent.allowedSecrets`).

A queue config or run spec is written by whoever may push to the queue; without this rule it
could mount or read any Secret of the target namespace (the chart's git, SSH and secret-env
Secrets live in the agent's namespace). Every way a pod names a Secret is checked: env
`secretKeyRef`, `envFrom.secretRef`, `secret` volumes, `projected` secret sources, the
`secretRef`/`nodePublishSecretRef` of CSI and other volume plugins, `azureFile.secretName`, and
`imagePullSecrets`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from agent.manifest.errors import ManifestError
from agent.manifest.settings import ManifestSettings

_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def _name_of(ref: Any) -> str | None:
    if isinstance(ref, Mapping):
        name = ref.get("name")
        return "" if name is None else str(name)
    return None


def _volume_refs(vol: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    label = f"volume {vol.get('name', '')!r}"
    for source, body in vol.items():
        if source == "name" or not isinstance(body, Mapping):
            continue
        if source == "secret":
            yield f"{label} (secret)", str(body.get("secretName") or "")
        elif source == "azureFile":
            yield f"{label} (azureFile)", str(body.get("secretName") or "")
        elif source == "projected":
            for src in body.get("sources") or []:
                if isinstance(src, Mapping) and isinstance(src.get("secret"), Mapping):
                    yield f"{label} (projected secret)", str(src["secret"].get("name") or "")
        for key in ("secretRef", "nodePublishSecretRef"):
            name = _name_of(body.get(key))
            if name is not None:
                yield f"{label} ({source}.{key})", name


def secret_refs(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, Secret name) for every Secret the pod spec references."""
    for key in _CONTAINER_LISTS:
        for c in pod_spec.get(key) or []:
            if not isinstance(c, Mapping):
                continue
            who = f"container {c.get('name', '')!r}"
            for e in c.get("env") or []:
                value_from = e.get("valueFrom") if isinstance(e, Mapping) else None
                if isinstance(value_from, Mapping):
                    name = _name_of(value_from.get("secretKeyRef"))
                    if name is not None:
                        yield f"{who} env {e.get('name', '')} (secretKeyRef)", name
            for e in c.get("envFrom") or []:
                name = _name_of(e.get("secretRef")) if isinstance(e, Mapping) else None
                if name is not None:
                    yield f"{who} envFrom (secretRef)", name
    for vol in pod_spec.get("volumes") or []:
        if isinstance(vol, Mapping):
            yield from _volume_refs(vol)
    for ref in pod_spec.get("imagePullSecrets") or []:
        name = _name_of(ref)
        if name is not None:
            yield "imagePullSecrets", name


def check_secret_refs(pod_spec: Mapping[str, Any], settings: ManifestSettings, where: str) -> None:
    allowed = {settings.api_key_secret, *settings.allowed_secrets}
    for what, name in secret_refs(pod_spec):
        if name not in allowed:
            listed = ", ".join(sorted(allowed))
            raise ManifestError("secret", f"{where}: {what} references Secret {name!r}, which is not allowed "
                                          f"(allowed: {listed}; add it to the chart value agent.allowedSecrets)")
