"""Choosing the Dockerfile of a build, or writing one.

The order is the official agent's: ``overrides.dockerfile`` of the run, the job's own Dockerfile,
a ``Dockerfile.wandb`` beside the entrypoint, else a generated one. The generated Dockerfile is
ours: two stages (dependencies installed into a virtualenv on ``python:<X.Y>``, copied onto
``python:<X.Y>-slim`` or the accelerator image), a numeric non-root user (so
``runAsNonRoot`` can be checked by the kubelet), the code under the user's home.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from agent.build.source import BuildError, BuildSource

REQUIREMENTS = "requirements.txt"
FROZEN = "requirements.frozen.txt"
INSTALLER = "_launch_agent_install.py"  # written beside Dockerfile.wandb for frozen requirements
PYPROJECT_REQUIREMENTS = "_launch_agent_requirements.txt"  # pyproject's dependencies, one a line
INSTALLER_SOURCE = Path(__file__).with_name("install_frozen.py")

# A docker reference: [host[:port]/]path[:tag][@sha256:digest]; no whitespace or '#'.
_REFERENCE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::\d{1,5})?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-fA-F]{64})?$")


@dataclass(frozen=True)
class DockerfileChoice:
    """Where the Dockerfile comes from and what goes into the context."""

    kind: str  # override, job, beside-entrypoint, generated
    text: str
    context_root: Path  # copied as the context (generated: copied to src/)
    entrypoint: tuple[str, ...]
    extra_files: tuple[tuple[str, bytes], ...] = ()  # written at the context's top level


def _inside(root: Path, relative: str, what: str) -> Path:
    path = (root / relative).resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise BuildError(f"{what} {relative!r} points outside the job's code", stage="build")
    return path


def choose(source: BuildSource) -> DockerfileChoice:
    root = source.directory
    if source.build_context:
        root = _inside(root, source.build_context, "the job's build context")
        if not root.is_dir():
            raise BuildError(f"the job's build context {source.build_context!r} does not exist in its code")
    for kind, name in (("override", source.override_dockerfile), ("job", source.dockerfile)):
        if name:
            path = _inside(root, name, "the Dockerfile")
            if not path.is_file():
                raise BuildError(f"the Dockerfile {name!r} does not exist in the job's code")
            return DockerfileChoice(kind, path.read_text(), root, source.entrypoint)
    entry_dir = _entry_dir(source.entrypoint)
    beside = _inside(root, str(Path(entry_dir) / "Dockerfile.wandb"), "Dockerfile.wandb")
    if beside.is_file():
        entrypoint = source.entrypoint
        if entry_dir:  # the entrypoint's directory becomes the context: its path loses that prefix
            entrypoint = _relocate(entrypoint, entry_dir)
        return DockerfileChoice("beside-entrypoint", beside.read_text(), beside.parent, entrypoint)
    text, files = generate(source)
    return DockerfileChoice("generated", text, source.directory, source.entrypoint, files)


def _entry_dir(entrypoint: tuple[str, ...]) -> str:
    """The directory of the entrypoint's script (``python dir/train.py`` -> ``dir``)."""
    if not entrypoint:
        return ""
    return str(Path(entrypoint[-1]).parent) if "/" in entrypoint[-1] else ""


def _relocate(entrypoint: tuple[str, ...], entry_dir: str) -> tuple[str, ...]:
    if len(entrypoint) == 2 and (entrypoint[0].startswith("python") or entrypoint[0] == "bash"):
        return (entrypoint[0], str(Path(entrypoint[1]).relative_to(entry_dir)))
    return entrypoint


def check_base_image(image: str) -> str:
    if not _REFERENCE.match(image):
        raise BuildError(f"the accelerator base image {image!r} is not a valid image reference", stage="agent")
    return image


def _requirements_section(code: Path) -> tuple[str, tuple[tuple[str, bytes], ...]]:
    """The dependency step: requirements.txt, else pyproject's dependencies, else the frozen list."""
    if (code / REQUIREMENTS).is_file():
        if not _has_requirements(code / REQUIREMENTS):
            return "", ()  # pip refuses an empty list; nothing to install
        return (f"COPY src/{REQUIREMENTS} /tmp/{REQUIREMENTS}\n"
                f"RUN pip install -r /tmp/{REQUIREMENTS}\n"), ()
    deps = _project_dependencies(code / "pyproject.toml")
    if deps:
        return (f"COPY {PYPROJECT_REQUIREMENTS} /tmp/{REQUIREMENTS}\n"
                f"RUN pip install -r /tmp/{REQUIREMENTS}\n"), ((PYPROJECT_REQUIREMENTS, "".join(
                    f"{d}\n" for d in deps).encode()),)
    if (code / FROZEN).is_file():
        return (f"COPY src/{FROZEN} {INSTALLER} /tmp/\n"
                f"RUN python /tmp/{INSTALLER} /tmp/{FROZEN}\n"), ((INSTALLER, INSTALLER_SOURCE.read_bytes()),)
    return "", ()


def _has_requirements(path: Path) -> bool:
    lines = path.read_text(errors="replace").splitlines()
    return any(line.split("#", 1)[0].strip() for line in lines)


def _project_dependencies(pyproject: Path) -> list[str]:
    import tomllib

    if not pyproject.is_file():
        return []
    try:
        data = tomllib.loads(pyproject.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []
    deps = (data.get("project") or {}).get("dependencies") or []
    return [str(d) for d in deps if isinstance(d, str) and "\n" not in d]


def generate(source: BuildSource, default_python: str = "") -> tuple[str, tuple[tuple[str, bytes], ...]]:
    """Our Dockerfile for a job without one, and the files it needs beside it."""
    import sys

    from agent.build.source import python_minor

    py = python_minor(source.python_version, default_python or f"{sys.version_info[0]}.{sys.version_info[1]}")
    if not source.entrypoint:
        raise BuildError("the job has no entrypoint to build an image for", stage="agent")
    uid = int(source.user_id)
    if source.accelerator_base_image:
        base = check_base_image(source.accelerator_base_image)
        runtime = (f"FROM {base} AS run\n"
                   "ENV DEBIAN_FRONTEND=noninteractive\n"
                   f"RUN apt-get update -qq && apt-get install -y --no-install-recommends python{py} "
                   f"python3-venv && rm -rf /var/lib/apt/lists/* "
                   f"&& ln -sf /usr/bin/python{py} /usr/local/bin/python\n")
    else:
        runtime = f"FROM python:{py}-slim AS run\n"
    requirements, files = _requirements_section(source.directory)
    text = (
        f"# Generated by launch-agent for {source.source_string}\n"
        f"FROM python:{py} AS deps\n"
        "ENV PIP_PROGRESS_BAR=off PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1\n"
        "RUN python -m venv /env\n"
        "ENV PATH=/env/bin:$PATH\n"
        f"{requirements}"
        "\n"
        f"{runtime}"
        "COPY --from=deps /env /env\n"
        "ENV PATH=/env/bin:$PATH PYTHONUNBUFFERED=1\n"
        f"RUN useradd --create-home --no-log-init --uid {uid} --gid 0 --home-dir /home/launch launch || true\n"
        f"WORKDIR /home/launch\n"
        f"COPY --chown={uid}:0 src/ /home/launch/\n"
        f"USER {uid}\n"
        f"ENTRYPOINT {json.dumps(list(source.entrypoint))}\n"
    )
    return text, files
