"""Shared pytest setup. The localenv plugin provides the ``kube`` session fixture (a real
control plane), ``namespace`` and ``kube_cluster``; add other shared fixtures below."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from localenv import results
from localenv.secretscan import SecretScan

pytest_plugins = ["localenv.pytest_plugin", "localenv.buildservers.pytest_plugin"]

_SCAN_TOTALS = {"tests": 0, "sources": 0, "lines_or_objects": 0, "leaks": 0}


@pytest.fixture
def secret_scan() -> Iterator[Callable[[str], SecretScan]]:
    """``secret_scan(key)`` -> a SecretScan; feed it what the test captured (agent output, the
    emulator's request log, the cluster's objects). Every scan made is asserted clean when the
    test ends, and the totals go to the results directory (security-secret-scan.json)."""
    scans: list[SecretScan] = []

    def make(secret: str) -> SecretScan:
        scans.append(SecretScan(secret))
        return scans[-1]

    yield make
    for scan in scans:
        _SCAN_TOTALS["tests"] += 1
        _SCAN_TOTALS["sources"] += len(scan.scanned)
        _SCAN_TOTALS["lines_or_objects"] += sum(scan.scanned.values())
        _SCAN_TOTALS["leaks"] += len(scan.leaks)
    _write_scan_totals()
    for scan in scans:
        scan.assert_clean()


def _write_scan_totals() -> None:
    results.write("security-secret-scan", dict(_SCAN_TOTALS))
