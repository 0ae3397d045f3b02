"""The agent pod passes the restricted Pod Security Standard, with probes and writable scratch dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from chart_checks import (
    BASIC,
    CHART,
    CI_FILES,
    OFFICIAL_STYLE,
    agent_container,
    deployment,
    env_of,
    of_kind,
    pod_specs,
    pss_restricted_violations,
)

VALUE_SETS = [*CI_FILES, OFFICIAL_STYLE]


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=[p.stem for p in VALUE_SETS])
def test_every_pod_passes_pss_restricted(render, values_file: Path) -> None:
    specs = list(pod_specs(render(files=(values_file,), namespace="ml")))
    assert len(specs) == 2  # the agent and the helm test pod
    for name, spec in specs:
        assert pss_restricted_violations(spec) == [], name


def test_pss_check_catches_a_root_pod(render) -> None:
    """The check above can fail: a root, privileged override is reported."""
    values = {"agent": {"containerSecurityContext": {"privileged": True, "runAsNonRoot": False, "allowPrivilegeEscalation": True}}}
    spec = deployment(render(files=(BASIC,), values=values))["spec"]["template"]["spec"]
    bad = pss_restricted_violations(spec)
    assert any("privileged" in b for b in bad) and any("runAsNonRoot" in b for b in bad)


def test_read_only_root_with_writable_tmp_and_home(render) -> None:
    objs = render(files=(BASIC,))
    spec = deployment(objs)["spec"]["template"]["spec"]
    container = agent_container(objs)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in ("/tmp", "/home/launch_agent"):
        assert "emptyDir" in volumes[mounts[path]["name"]], path
        assert not mounts[path].get("readOnly")
    config = mounts["/home/launch_agent/.config/wandb"]
    assert config["readOnly"] is True
    assert volumes[config["name"]]["configMap"]["items"] == [{"key": "launch-config.yaml", "path": "launch-config.yaml"}]
    assert env_of(container)["HOME"]["value"] == "/home/launch_agent"
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"


def test_probes_on_the_health_port(render) -> None:
    container = agent_container(render(files=(BASIC,), values={"agent": {"healthPort": 9090}}))
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["ports"] == [{"name": "health", "containerPort": 9090, "protocol": "TCP"}]
    assert env_of(container)["LAUNCH_AGENT_HEALTH_PORT"]["value"] == "9090"


def test_probes_switch_off(render) -> None:
    objs = render(files=(BASIC,), values={"agent": {"probes": {"enabled": False}}})
    container = agent_container(objs)
    assert "livenessProbe" not in container and "readinessProbe" not in container
    assert not of_kind(objs, "Service")


def test_network_policy(render) -> None:
    assert not of_kind(render(files=(BASIC,)), "NetworkPolicy")
    objs = render(files=(CHART / "ci" / "multi-namespace-values.yaml",))
    (np,) = of_kind(objs, "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["podSelector"]["matchLabels"] == deployment(objs)["spec"]["selector"]["matchLabels"]
    ports = {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])}
    assert ports == {53, 443, 6443}
    assert np["spec"]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_pod_settings_users_expect(render) -> None:
    values = {
        "agent": {
            "imagePullSecrets": [{"name": "regcred"}],
            "priorityClassName": "high",
            "extraVolumes": [{"name": "data", "emptyDir": {}}],
            "extraVolumeMounts": [{"name": "data", "mountPath": "/data"}],
            "podSecurityContext": {"runAsUser": 2000},
        }
    }
    objs = render(files=(BASIC,), values=values)
    spec = deployment(objs)["spec"]["template"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["priorityClassName"] == "high"
    assert {"name": "data", "emptyDir": {}} in spec["volumes"]
    assert {"name": "data", "mountPath": "/data"} in agent_container(objs)["volumeMounts"]
    assert spec["securityContext"]["runAsUser"] == 2000
    assert spec["securityContext"]["runAsNonRoot"] is True  # the rest of the default stays


def test_replicas_turn_on_leader_election_and_a_pdb(render) -> None:
    one_objs = render(files=(BASIC,))
    env = env_of(agent_container(one_objs))
    assert env["LAUNCH_AGENT_LEADER_ELECTION"]["value"] == "false"
    assert "LAUNCH_AGENT_LEASE_NAME" not in env
    assert deployment(one_objs)["spec"]["strategy"] == {"type": "Recreate"}
    objs = render(files=(BASIC,), values={"replicas": 3, "agent": {"minAvailable": 2}})
    env = env_of(agent_container(objs))
    assert env["LAUNCH_AGENT_LEADER_ELECTION"]["value"] == "true"
    assert env["LAUNCH_AGENT_LEASE_NAME"]["value"] == "ci-launch-agent-leader"
    assert env["LAUNCH_AGENT_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    (pdb,) = of_kind(objs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    assert deployment(objs)["spec"]["replicas"] == 3


def test_default_resources_request_less_than_the_limit(render) -> None:
    """An idle poller should not reserve a whole CPU (requests default to limits when unset)."""
    resources = agent_container(render(files=(BASIC,)))["resources"]
    assert resources["requests"]["cpu"] == "100m"
    assert resources["limits"]["cpu"] == "1000m"
