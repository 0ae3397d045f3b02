"""User strings survive intact; bad values fail with a message naming the key."""

from __future__ import annotations

import base64

import pytest
from chart_checks import API_KEY, BASIC, agent_container, deployment, env_of, of_kind, one

TRICKY = ["true", "8080", "a: b", "#x", "*abc: d", "null", "0x1F", "- item", "multi\nline", "quote\"d", "{x}"]


def test_env_values_survive(render) -> None:
    values = {"additionalEnvVars": [{"name": f"V{i}", "value": v} for i, v in enumerate(TRICKY)]}
    env = env_of(agent_container(render(files=(BASIC,), values=values)))
    for i, v in enumerate(TRICKY):
        assert env[f"V{i}"]["value"] == v


def test_env_map_form_is_accepted(render) -> None:
    env = env_of(agent_container(render(files=(BASIC,), values={"additionalEnvVars": {"PORT": "8080"}})))
    assert env["PORT"]["value"] == "8080"


@pytest.mark.parametrize("text", TRICKY)
def test_secret_and_config_strings_survive(render, text: str) -> None:
    values = {
        "agent": {"apiKey": text, "podAnnotations": {"note": text}},
        "gitCreds": f"https://u:{text}@example.com",
        "azureStorageAccessKey": text,
        "baseUrl": "https://wandb.example.com/" + text.replace("\n", "").replace(" ", ""),
        "additionalSecretEnvVars": [{"name": "S", "value": text}],
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": text}},
        "commonLabels": {"team": "true"},
    }
    objs = render(files=(BASIC,), values=values)
    secrets = {s["metadata"]["name"]: s for s in of_kind(objs, "Secret")}
    dec = lambda s, k: base64.b64decode(secrets[s]["data"][k]).decode()  # noqa: E731
    assert dec("wandb-api-key-ci", "password") == text
    assert dec("ci-launch-agent-azure-storage", "password") == text
    assert dec("ci-launch-agent-secret-env", "S") == text
    assert dec("ci-launch-agent-git-creds", ".git-credentials").strip() == f"https://u:{text}@example.com".strip()
    pod = deployment(objs)["spec"]["template"]["metadata"]
    assert pod["annotations"]["note"] == text
    assert pod["labels"]["team"] == "true"
    assert one(objs, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == text
    cm = one(objs, "ConfigMap", "config")
    assert cm["data"]["wandb-base-url"] == values["baseUrl"]


def test_launch_config_is_passed_verbatim(render) -> None:
    text = "# my agent\nqueues:\n  - \"true\"\n  - '8080'\nmax_jobs: 3  # comment\n"
    cm = one(render(files=(BASIC,), values={"launchConfig": text}), "ConfigMap", "config")
    assert cm["data"]["launch-config.yaml"] == text


def test_numeric_looking_labels_and_node_selector(render) -> None:
    values = {"agent": {"labels": {"cost-center": "1234", "spot": "true"}, "nodeSelector": {"pool": "8080"}}}
    spec = deployment(render(files=(BASIC,), values=values))["spec"]["template"]
    assert spec["metadata"]["labels"]["cost-center"] == "1234"
    assert spec["metadata"]["labels"]["spot"] == "true"
    assert spec["spec"]["nodeSelector"] == {"pool": "8080"}


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"agent": {"imagePullpolicy": "Always"}}, "imagePullpolicy"),
        ({"additionalTargetNamespace": ["x"]}, "additionalTargetNamespace"),
        ({"agent": {"startTimeout": "soon"}}, "/agent/startTimeout"),
        ({"replicas": "two"}, "/replicas"),
        ({"additionalTargetNamespaces": ["Not_Valid"]}, "/additionalTargetNamespaces/0"),
        ({"additionalEnvVars": [{"name": "PORT", "value": 8080}]}, "/additionalEnvVars"),
        ({"agent": {"imagePullPolicy": "Sometimes"}}, "/agent/imagePullPolicy"),
        ({"rbac": {"extraRules": [{"apiGroups": ["x"], "resources": ["y"]}]}}, "/rbac/extraRules/0"),
        ({"agent": {"securityLevel": "lax"}}, "/agent/securityLevel"),
        ({"sshAuthSecrets": [{"name": "k"}]}, "/sshAuthSecrets/0"),
        ({"volcano": "yes"}, "/volcano"),
    ],
)
def test_schema_rejects_typos_and_wrong_types_naming_the_key(render_error, values: dict, needle: str) -> None:
    err = render_error(values, files=(BASIC,))
    assert "schema" in err and needle in err, err


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"agent": {"apiKey": API_KEY, "useExternalWandbSecret": True}}, "agent.apiKey is set together with agent.useExternalWandbSecret"),
        ({"agent": {"apiKey": API_KEY, "existingApiKeySecret": "x"}}, "agent.apiKey is set together with agent.existingApiKeySecret"),
        ({"agent": {"apiKey": ""}, "launchConfig": "queues: [a]"}, "agent.apiKey: required"),
        ({"agent": {"apiKey": API_KEY}}, "launchConfig: required"),
        ({"agent": {"apiKey": API_KEY}, "launchConfig": "queues: [a"}, "launchConfig: not a YAML mapping"),
        ({"agent": {"apiKey": API_KEY}, "launchConfig": "- a\n- b\n"}, "launchConfig: not a YAML mapping"),
        ({"agent": {"apiKey": API_KEY}, "launchConfig": "max_jobs: 3\n"}, "launchConfig: `queues` must be a non-empty list"),
        ({"agent": {"apiKey": API_KEY}, "launchConfig": "queues: []\n"}, "launchConfig: `queues` must be a non-empty list"),
        ({"agent": {"apiKey": API_KEY}, "launchConfig": "queues:\n  - <YOUR QUEUE NAME>\n"}, "launchConfig: queue <YOUR QUEUE NAME>"),
        ({"agent": {"apiKey": API_KEY, "image": "wandb/launch-agent:0.17.3"}, "replicas": 2, "launchConfig": "queues: [a]"},
         "replicas > 1 needs leader election"),
        ({"agent": {"apiKey": API_KEY, "minAvailable": 2}, "replicas": 2, "launchConfig": "queues: [a]"},
         "agent.minAvailable (2) must be lower than replicas (2)"),
        ({"agent": {"apiKey": API_KEY}, "gitCreds": "x", "existingGitCredsSecret": "y", "launchConfig": "queues: [a]"},
         "gitCreds is set together with existingGitCredsSecret"),
        ({"agent": {"apiKey": API_KEY}, "customCABundle": {"configMap": {"name": "ca"}}, "launchConfig": "queues: [a]"},
         "customCABundle.configMap: set both name and key"),
    ],
)
def test_contradictory_values_fail_with_a_clear_message(render_error, values: dict, needle: str) -> None:
    err = render_error(values)
    assert needle in err, err
