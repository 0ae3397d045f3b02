"""One run on a queue, built by the agent's own manifest code (`agent.manifest.build_workload`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.manifest import ManifestError, ManifestSettings, build_workload, pod_templates, secret_refs
from generator.queues import QueueInfo


@dataclass(frozen=True)
class RunFacts:
    image: str = "registry.example.com/launch/run:latest"
    run_id: str = "preview1"
    entity: str = "entity"
    project: str = "project"
    run_name: str = ""
    author: str = ""
    item_id: str = "preview-item"


def _plain(value: Any) -> Any:
    """Mapping keys JSON can hold (YAML also allows `!!binary` and sequences as keys)."""
    if isinstance(value, dict):
        return {k if k is None or isinstance(k, str | int | float) else
                k.decode(errors="replace") if isinstance(k, bytes) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def build(info: QueueInfo, *, queue_name: str, agent_namespace: str, targets: Sequence[str],
          api_key_secret: str, release: str, security_level: str = "baseline", secure_mode: bool = False,
          run: RunFacts | None = None, allowed_secrets: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The objects the agent creates for one run on this queue; ManifestError if it refuses."""
    facts = run or RunFacts()
    body = json.loads(json.dumps(_plain(info.body), default=str))  # plain JSON types, as the backend sends them
    settings = ManifestSettings(
        agent_namespace=agent_namespace, target_namespaces=tuple(targets), api_key_secret=api_key_secret,
        agent_identity=release, queue_entity=facts.entity, security_level=security_level,
        secure_mode=secure_mode, allowed_secrets=tuple(allowed_secrets))
    run_spec = {
        "run_id": facts.run_id, "entity": facts.entity, "project": facts.project, "name": facts.run_name,
        "author": facts.author, "docker": {"docker_image": facts.image},
        "resource_args": {"kubernetes": body}, "overrides": {},
    }
    return build_workload(run_spec, item_id=facts.item_id, queue=queue_name, settings=settings)


def queue_secrets(infos: Sequence[QueueInfo], api_key_secret: str) -> list[str]:
    """The Secrets the queue configs' pods reference (besides the API key's): the agent's allowlist."""
    names = {name for q in infos for tmpl in pod_templates(q.body)
             if isinstance(tmpl.get("spec"), dict) for _, name in secret_refs(tmpl["spec"])}
    return sorted(n for n in names if n and n != api_key_secret and "${" not in n)


__all__ = ["ManifestError", "RunFacts", "build", "queue_secrets"]
