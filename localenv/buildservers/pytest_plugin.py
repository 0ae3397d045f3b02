"""Fixtures for the image-build servers: ``buildservers`` starts the registry, S3 (moto), GCS
(fake-gcs-server) and Azure blob (Azurite, over HTTPS with OAuth ``basic``) once per test
session on loopback and stops them at the end. A server that cannot start fails the tests
that use it; nothing is skipped.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from localenv.buildservers import servers


@pytest.fixture(scope="session")
def buildservers() -> Iterator[servers.BuildServers]:
    state_dir = Path(tempfile.mkdtemp(prefix="buildservers-"))
    try:
        running = servers.up(state_dir, azure={"https": True})
    except (servers.ServerError, servers.install.InstallError) as exc:
        shutil.rmtree(state_dir, ignore_errors=True)
        pytest.fail(f"the build servers did not start: {exc}", pytrace=False)
    try:
        yield running
    finally:
        servers.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def auth_registry(buildservers: servers.BuildServers) -> servers.Server:
    """A second registry that asks for basic credentials (user ``pusher``, password ``s3cret``)."""
    port = servers.cluster.free_ports(["auth-registry"])["auth-registry"]
    server = servers.start_registry(buildservers.state_dir, "127.0.0.1", port, users={"pusher": "s3cret"},
                                    name="auth-registry")
    buildservers.servers["auth-registry"] = server
    buildservers.save()
    return server
