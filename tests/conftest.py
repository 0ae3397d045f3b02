"""Shared pytest setup. The localenv plugin provides the ``kube`` session fixture (a real
control plane), ``namespace`` and ``kube_cluster``; add other shared fixtures below."""

pytest_plugins = ["localenv.pytest_plugin", "localenv.buildservers.pytest_plugin"]
