"""localenv.helm: the real helm CLI, isolated from the user's helm configuration."""

from __future__ import annotations

import pytest
from chart_checks import BASIC, CHART, KUBE_VERSION

from localenv import helm


def test_run_uses_private_helm_homes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELM_CONFIG_HOME", "/nonexistent/user-config")
    env = dict(line.split("=", 1) for line in helm.run("env").splitlines() if "=" in line)
    for key in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        value = env[key].strip('"')
        assert "helm-home-" in value, (key, value)


def test_template_returns_parsed_objects_without_empty_documents() -> None:
    objs = helm.template(CHART, values_files=(BASIC,), release="wrap", namespace="ns1", kube_version=KUBE_VERSION)
    assert objs and all(isinstance(o, dict) and o.get("kind") for o in objs)
    assert {o["metadata"]["namespace"] for o in objs} == {"ns1"}


def test_template_values_keep_yaml_1_1_lookalikes_as_strings() -> None:
    objs = helm.template(CHART, values={"additionalEnvVars": [{"name": "FLAG", "value": "y"}, {"name": "SW", "value": "on"}]},
                         values_files=(BASIC,), kube_version=KUBE_VERSION)
    dep = next(o for o in objs if o["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["FLAG"], env["SW"]) == ("y", "on")


def test_helm_error_carries_stderr() -> None:
    with pytest.raises(helm.HelmError) as info:
        helm.template(CHART, values={"nope": 1}, values_files=(BASIC,), kube_version=KUBE_VERSION)
    assert "nope" in info.value.stderr
    assert info.value.returncode != 0
    assert "nope" in str(info.value)


def test_template_defaults_to_the_kubernetes_version_localenv_runs() -> None:
    version = helm.default_kube_version()
    assert version and version.startswith("1.")
    objs = helm.template(CHART, values_files=(BASIC,))  # the chart requires Kubernetes >= 1.25
    assert any(o["kind"] == "Deployment" for o in objs)
