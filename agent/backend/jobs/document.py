"""Reading what W&B says about a job: its name in a run spec, and its `wandb-job.json`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from agent.jobspec import SOURCE_TYPES, GitSource

_NAME_PART = re.compile(r"^[\w.-]+$")


class JobError(Exception):
    """A job that cannot be launched: one line a person can act on (the item fails with it)."""


@dataclass(frozen=True)
class JobName:
    entity: str
    project: str
    collection: str
    alias: str

    @property
    def full(self) -> str:
        return f"{self.entity}/{self.project}/{self.collection}:{self.alias}"

    @property
    def immutable(self) -> bool:
        """`v<N>` always names the same version; other aliases can move."""
        return bool(re.fullmatch(r"v\d+", self.alias))


def parse_job_name(value: Any, default_entity: str = "", default_project: str = "") -> JobName:
    """``entity/project/name:alias`` (alias ``latest`` when absent; entity and project from the run
    when the name has fewer parts)."""
    if not isinstance(value, str) or not value.strip():
        raise JobError("the run spec's job must be a string naming a job: entity/project/name:alias")
    text = value.strip()
    path, _, alias = text.partition(":")
    parts = path.split("/")
    if len(parts) == 1:
        parts = [default_entity, default_project, *parts]
    elif len(parts) == 2:
        parts = [default_entity, *parts]
    alias = alias or "latest"
    if len(parts) != 3 or not all(_NAME_PART.match(p) for p in parts) or not _NAME_PART.match(alias):
        raise JobError(f"job {text!r} is not a job name: use entity/project/name:alias")
    return JobName(parts[0], parts[1], parts[2], alias)


def _str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise JobError(f"wandb-job.json: {where} must be a string")
    return value


@dataclass(frozen=True)
class JobDocument:
    source_type: str
    image: str | None
    code: str | None  # wandb-artifact:// reference
    git: GitSource | None
    entrypoint: tuple[str, ...]
    runtime: str | None
    base_image: str | None
    dockerfile: str | None
    build_context: str | None
    notebook: bool


def parse_job_document(raw: bytes, job: str) -> JobDocument:
    """The fields of `wandb-job.json` the launch path uses; JobError for anything malformed."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise JobError(f"job {job}: wandb-job.json is not valid JSON") from None
    if not isinstance(doc, dict):
        raise JobError(f"job {job}: wandb-job.json must be a JSON object")
    source_type = doc.get("source_type")
    if source_type not in SOURCE_TYPES:
        raise JobError(f"job {job}: wandb-job.json has source_type {source_type!r}; this agent launches "
                       f"{', '.join(SOURCE_TYPES)}")
    source = doc.get("source")
    if not isinstance(source, dict):
        raise JobError(f"job {job}: wandb-job.json has no source object")
    entrypoint = source.get("entrypoint") or []
    if not isinstance(entrypoint, list) or not all(isinstance(p, str) for p in entrypoint):
        raise JobError(f"job {job}: wandb-job.json source.entrypoint must be a list of strings")
    image = _str(source.get("image"), "source.image")
    code = _str(source.get("artifact"), "source.artifact")
    git = None
    if source_type == "image" and not image:
        raise JobError(f"job {job}: an image job's wandb-job.json needs source.image")
    if source_type == "artifact" and not code:
        raise JobError(f"job {job}: a code-artifact job's wandb-job.json needs source.artifact")
    if source_type == "repo":
        spec = source.get("git")
        remote = _str(spec.get("remote"), "source.git.remote") if isinstance(spec, dict) else None
        commit = _str(spec.get("commit"), "source.git.commit") if isinstance(spec, dict) else None
        if not remote or not commit:
            raise JobError(f"job {job}: a git job's wandb-job.json needs source.git.remote and source.git.commit")
        git = GitSource(remote=remote, commit=commit)
    if source_type != "image" and not entrypoint:
        raise JobError(f"job {job}: a {source_type} job's wandb-job.json needs source.entrypoint")
    runtime = doc.get("runtime")
    return JobDocument(
        source_type=source_type, image=image, code=code, git=git, entrypoint=tuple(entrypoint),
        runtime=str(runtime) if runtime else None, base_image=_str(source.get("base_image"), "source.base_image"),
        dockerfile=_str(source.get("dockerfile"), "source.dockerfile"),
        build_context=_str(source.get("build_context"), "source.build_context"),
        notebook=bool(source.get("notebook")))


def parse_artifact_reference(value: str, job: str) -> tuple[str, bool]:
    """``wandb-artifact://_id/<id>`` -> (id, True); ``wandb-artifact://entity/project/name:alias``
    (optionally with a host) -> (that name, False)."""
    prefix = "wandb-artifact://"
    if not value.startswith(prefix):
        raise JobError(f"job {job}: source.artifact {value!r} is not a wandb-artifact:// reference")
    rest = value[len(prefix):]
    if "://" in rest:
        rest = rest.split("://", 1)[1].split("/", 1)[1] if "/" in rest.split("://", 1)[1] else ""
    parts = rest.split("/")
    if parts[0] == "_id" and len(parts) >= 2 and parts[1]:
        return parts[1], True
    if len(parts) >= 3 and all(parts[:3]):
        return "/".join(parts[:3]), False
    raise JobError(f"job {job}: source.artifact {value!r} names no artifact")
