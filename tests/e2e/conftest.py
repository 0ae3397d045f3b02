"""Fixtures shared by the e2e modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from operations_fixture import RECORD, OperationsFixture


@pytest.fixture(scope="session")
def operations_fixture() -> Iterator[OperationsFixture]:
    """The official agent's operations, checked per scenario (written at the end when recording)."""
    recorder = OperationsFixture()
    yield recorder
    if RECORD:
        recorder.write()
