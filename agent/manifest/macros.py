"""Reading the run spec: the run facts and the six documented macros (never the agent's environment)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.manifest.errors import ManifestError

MACROS = ("image_uri", "run_id", "run_name", "project_name", "entity_name", "author")
_MACRO_RE = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class RunInfo:
    """The run facts that feed macros, env vars and labels."""

    run_id: str
    entity: str
    project: str
    run_name: str
    author: str
    image_uri: str
    prebuilt: bool = True  # the image is the run's own (docker_image, an image job), not a base image

    def macros(self) -> dict[str, str]:
        return {
            "image_uri": self.image_uri,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "project_name": self.project,
            "entity_name": self.entity,
            "author": self.author,
        }


def _as_str(value: Any, key: str = "value") -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise ManifestError("run-spec", f"{key} must be a string")
    return str(value)


def run_info(run_spec: Mapping[str, Any], *, image: str | None = None, prebuilt: bool = True) -> RunInfo:
    """The run facts; `image` replaces the spec's own (a resolved job's image or base image)."""
    if not isinstance(run_spec, Mapping):
        raise ManifestError("run-spec", "the run spec is not an object")
    run_id = _as_str(run_spec.get("run_id"), "run_id")
    if not run_id:
        raise ManifestError("run-spec", "the run spec has no run_id")
    entity = _as_str(run_spec.get("entity"), "entity")
    project = _as_str(run_spec.get("project"), "project").lower()
    if not entity or not project:
        raise ManifestError("run-spec", "the run spec needs both entity and project")
    docker = run_spec.get("docker") or {}
    spec_image = _as_str(docker.get("docker_image") if isinstance(docker, Mapping) else None, "docker.docker_image")
    spec_image = spec_image or _as_str(run_spec.get("image_uri"), "image_uri")
    return RunInfo(
        run_id=run_id,
        entity=entity,
        project=project,
        run_name=_as_str(run_spec.get("name"), "name"),
        author=_as_str(run_spec.get("author"), "author"),
        image_uri=spec_image if image is None else image,
        prebuilt=prebuilt if image is not None else True,
    )


def kubernetes_args(run_spec: Mapping[str, Any]) -> dict[str, Any]:
    resource_args = run_spec.get("resource_args") or {}
    if not isinstance(resource_args, Mapping):
        raise ManifestError("resource-args", "resource_args is not an object")
    config = resource_args.get("kubernetes") or {}
    if not isinstance(config, Mapping):
        raise ManifestError("resource-args", "resource_args.kubernetes is not an object")
    return copy.deepcopy(dict(config))


def expand_macros(value: Any, macros: Mapping[str, str]) -> Any:
    """Replace `${name}` for the documented macros in every string leaf; keys and unknown names stay."""
    if isinstance(value, str):
        return _MACRO_RE.sub(lambda m: macros[m.group(1)] if m.group(1) in macros else m.group(0), value)
    if isinstance(value, list):
        return [expand_macros(v, macros) for v in value]
    if isinstance(value, dict):
        return {k: expand_macros(v, macros) for k, v in value.items()}
    return value
