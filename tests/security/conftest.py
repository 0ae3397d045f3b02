"""Fixtures of the security tests (the session's ``kube`` comes from localenv.pytest_plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from security_helpers import Api

from localenv.pytest_plugin import Kube


@pytest.fixture(scope="session")
def api(kube: Kube) -> Iterator[Api]:
    """Raw JSON requests to the session's API server as the admin."""
    client = Api(kube)
    yield client
    client.client.close()
