"""Fixtures for the chart tests: every render goes through the real helm binary, once per value set."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_checks import CHART, KUBE_VERSION

from localenv import helm

Objects = list[dict[str, Any]]
Render = Callable[..., Objects]


@pytest.fixture(scope="session")
def render() -> Iterator[Render]:
    """render(values=None, files=(), release="ci", namespace="default") -> parsed objects, cached."""
    cache: dict[str, Objects] = {}

    def _render(
        values: dict[str, Any] | None = None,
        files: tuple[Path | str, ...] = (),
        release: str = "ci",
        namespace: str = "default",
        kube_version: str = KUBE_VERSION,
    ) -> Objects:
        key = json.dumps([values, [str(f) for f in files], release, namespace, kube_version], sort_keys=True)
        if key not in cache:
            cache[key] = helm.template(
                CHART,
                values=values,
                values_files=files,
                release=release,
                namespace=namespace,
                kube_version=kube_version,
            )
        return json.loads(json.dumps(cache[key]))  # a private copy per caller

    yield _render


@pytest.fixture(scope="session")
def render_error() -> Callable[..., str]:
    """render_error(values, files=()) -> helm's stderr; fails the test if helm succeeds."""

    def _render_error(values: dict[str, Any] | None = None, files: tuple[Path | str, ...] = ()) -> str:
        try:
            helm.template(CHART, values=values, values_files=files, kube_version=KUBE_VERSION)
        except helm.HelmError as exc:
            return exc.stderr
        pytest.fail(f"helm template succeeded for values {values!r}")

    return _render_error

