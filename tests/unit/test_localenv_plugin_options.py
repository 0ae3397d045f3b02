"""``--kubeconfig`` has one definition shared by the localenv plugin and pytest-helm-charts,
whichever of the two loads first, and the plugin still offers it without pytest-helm-charts."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

BOTH_READ_IT = """
def test_both_plugins_read_the_option(request, kube_config):
    assert request.config.getoption("kubeconfig") == "/given/kind.kubeconfig"
    assert kube_config == "/given/kind.kubeconfig"
"""

LOCALENV_READS_IT = """
from localenv.pytest_plugin import _existing_kubeconfig

def test_localenv_reads_the_option(request):
    assert str(_existing_kubeconfig(request.config)) == "/given/kind.kubeconfig"
"""


@pytest.mark.parametrize("load", ["-p", "conftest"])
def test_one_kubeconfig_option_for_both_plugins(pytester: pytest.Pytester, load: str) -> None:
    pytester.makepyfile(test_both=BOTH_READ_IT, test_localenv=LOCALENV_READS_IT)
    args = ["--kubeconfig", "/given/kind.kubeconfig", "-q"]
    if load == "-p":  # the localenv plugin registers before the entry-point plugins
        args = ["-p", "localenv.pytest_plugin", *args]
    else:  # as in tests/conftest.py: after them
        pytester.makeconftest('pytest_plugins = ["localenv.pytest_plugin"]\n')
    result = pytester.runpytest_inprocess(*args)
    assert "already used" not in result.stderr.str()
    result.assert_outcomes(passed=2)


def test_the_option_without_pytest_helm_charts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_localenv=LOCALENV_READS_IT)
    result = pytester.runpytest_inprocess("-p", "no:helm-charts", "-p", "localenv.pytest_plugin",
                                          "--kubeconfig", "/given/kind.kubeconfig", "-q")
    result.assert_outcomes(passed=1)
