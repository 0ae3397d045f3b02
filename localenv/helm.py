"""Thin wrapper around the real ``helm`` CLI.

The binary is ``$HELM_BIN`` when set, else the pinned build of ``localenv.tools``.
Every call runs with private HELM_{CACHE,CONFIG,DATA}_HOME directories so that a
user's repositories, plugins and registry logins never leak into a render.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["HelmError", "binary", "default_kube_version", "run", "template"]


class HelmError(RuntimeError):
    """helm exited non-zero; ``stderr`` holds its message."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str, stdout: str = "") -> None:
        self.args_used = list(args)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        first = stderr.strip() or stdout.strip() or f"exit code {returncode}"
        super().__init__(f"helm {' '.join(args[:2])} failed: {first}")


def binary() -> Path:
    """Path of the helm binary: ``$HELM_BIN`` or ``localenv.tools.binary("helm")``."""
    env = os.environ.get("HELM_BIN")
    if env:
        return Path(env)
    from localenv import tools  # imported lazily: building the tools is slow

    return Path(tools.binary("helm"))


def run(*args: str, input_text: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run ``helm ARGS`` in an isolated helm home and return stdout; HelmError on failure."""
    with tempfile.TemporaryDirectory(prefix="helm-home-") as home:
        full_env = dict(os.environ)
        full_env.update(
            {
                "HELM_CACHE_HOME": str(Path(home, "cache")),
                "HELM_CONFIG_HOME": str(Path(home, "config")),
                "HELM_DATA_HOME": str(Path(home, "data")),
            }
        )
        if env:
            full_env.update(env)
        proc = subprocess.run(
            [str(binary()), *args],
            input=input_text,
            capture_output=True,
            text=True,
            env=full_env,
            check=False,
        )
    if proc.returncode != 0:
        raise HelmError(list(args), proc.returncode, proc.stderr, proc.stdout)
    return proc.stdout


def default_kube_version() -> str | None:
    """The Kubernetes version localenv runs (its pinned k8s.io/kubernetes), or None if unknown.

    helm built from source without its release ldflags assumes Kubernetes v1.20 for
    ``helm template``, which a chart's ``kubeVersion`` constraint may refuse.
    """
    try:
        from localenv import tools

        version = tools.required_version(tools.TOOLS_DIR / "kubernetes", tools.KUBE)
    except (ImportError, AttributeError, OSError, ValueError, RuntimeError):
        return None
    return str(version).lstrip("v") or None


def template(
    chart_dir: str | os.PathLike[str],
    values: Mapping[str, Any] | None = None,
    values_files: Iterable[str | os.PathLike[str]] = (),
    release: str = "ci",
    namespace: str = "default",
    api_versions: Iterable[str] = (),
    kube_version: str | None = None,
    extra_args: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Render the chart with ``helm template`` and return the parsed objects.

    ``kube_version`` None means the version localenv runs (see ``default_kube_version``).
    ``values`` (applied after ``values_files``) is passed as a temporary JSON file (JSON
    is YAML), so every string stays a string even where YAML 1.1 would read ``y`` or
    ``on`` as a boolean. Empty documents are dropped.
    """
    args = ["template", release, str(chart_dir), "--namespace", namespace]
    for f in values_files:
        args += ["--values", str(f)]
    for api in api_versions:
        args += ["--api-versions", api]
    kube_version = kube_version or default_kube_version()
    if kube_version:
        args += ["--kube-version", kube_version]
    args += list(extra_args)
    if values is None:
        out = run(*args)
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="values-", delete=False) as fh:
            json.dump(dict(values), fh)
            path = fh.name
        try:
            out = run(*args, "--values", path)
        finally:
            os.unlink(path)
    return [doc for doc in yaml.safe_load_all(out) if doc]
