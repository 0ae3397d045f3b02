"""What a build starts from: the job's source, materialized in a directory, and the facts about it
that choose or generate the Dockerfile. Pure data; nothing here does I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOCKERFILE_NAME = "Dockerfile.wandb"  # the file name Kaniko is given (the official agent's too)
DEFAULT_USER_ID = 1000


class BuildError(Exception):
    """A build cannot be prepared or failed; ``stage`` is what W&B shows (``build`` or ``agent``)."""

    def __init__(self, message: str, stage: str = "build") -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage


@dataclass(frozen=True)
class BuildSource:
    """A job version to build.

    ``source_string`` identifies the version (``<job artifact name>:v<version>``), exactly what the
    official agent hashes into the image tag; ``directory`` holds the code (with the job's
    ``requirements.frozen.txt`` beside it when the job has one).
    """

    source_string: str
    directory: Path
    entrypoint: tuple[str, ...]
    python_version: str = ""  # the job's runtime ("3.11", "Python 3.11.7"); empty: the agent's
    dockerfile: str = ""  # the job's own Dockerfile, relative to the build context
    build_context: str = ""  # a subdirectory of the code that is the build context
    override_dockerfile: str = ""  # runSpec overrides.dockerfile
    accelerator_base_image: str = ""
    user_id: int = DEFAULT_USER_ID


def python_minor(version: str, default: str) -> str:
    """``"3.11"`` from any of ``3.11``, ``3.11.7``, ``Python 3.11.7``, ``python-3.11``; else *default*."""
    match = re.search(r"(\d+)\.(\d+)", version or "")
    return f"{match.group(1)}.{match.group(2)}" if match else default
