"""Fixtures of the chart tests on the real control plane (``kube`` comes from localenv)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localenv.pytest_plugin import Kube


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture
def release(kube: Kube) -> Iterator[list[tuple[str, str]]]:
    """Collects (release, namespace) pairs and uninstalls whatever a test left installed."""
    made: list[tuple[str, str]] = []
    yield made
    for name, ns in made:
        kube.helm("uninstall", name, "-n", ns, "--ignore-not-found", "--wait", "--timeout", "60s", check=False)


# pytest-helm-charts: its `kube_cluster` (a pykube client over a kubeconfig) and wait helpers,
# over the cluster of this session: the localenv's, or the one given with --kubeconfig (kind...).
from pytest_helm_charts.fixtures import kube_cluster  # noqa: E402,F401  (the plugin's, not localenv's)


@pytest.fixture(scope="module")
def kube_config(kube: Kube) -> str:
    """The kubeconfig pytest-helm-charts connects with: the session's cluster."""
    return str(kube.kubeconfig)
