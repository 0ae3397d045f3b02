"""One run on a queue, built by the agent's own manifest code (`agent.manifest.build_workload`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.manifest import ManifestError, ManifestSettings, build_workload
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


def build(info: QueueInfo, *, queue_name: str, agent_namespace: str, targets: Sequence[str],
          api_key_secret: str, release: str, security_level: str = "baseline", secure_mode: bool = False,
          run: RunFacts | None = None) -> list[dict[str, Any]]:
    """The objects the agent creates for one run on this queue; ManifestError if it refuses."""
    facts = run or RunFacts()
    body = json.loads(json.dumps(info.body, default=str))  # plain JSON types, as the backend sends them
    settings = ManifestSettings(
        agent_namespace=agent_namespace, target_namespaces=tuple(targets), api_key_secret=api_key_secret,
        agent_identity=release, queue_entity=facts.entity, security_level=security_level,
        secure_mode=secure_mode)
    run_spec = {
        "run_id": facts.run_id, "entity": facts.entity, "project": facts.project, "name": facts.run_name,
        "author": facts.author, "docker": {"docker_image": facts.image},
        "resource_args": {"kubernetes": body}, "overrides": {},
    }
    return build_workload(run_spec, item_id=facts.item_id, queue=queue_name, settings=settings)


__all__ = ["ManifestError", "RunFacts", "build"]
