"""Secrets: where the API key may appear, per-namespace copies, external Secrets, checksums."""

from __future__ import annotations

import base64

from chart_checks import API_KEY, BASIC, CHART, agent_container, all_strings, deployment, env_of, of_kind


def secret_value(secret: dict, key: str) -> str:
    if key in secret.get("stringData", {}):
        return secret["stringData"][key]
    return base64.b64decode(secret["data"][key]).decode()


def test_api_key_only_in_secrets(render) -> None:
    objs = render(files=(CHART / "ci" / "multi-namespace-values.yaml",), namespace="x")
    encoded = base64.b64encode(API_KEY.encode()).decode()
    holders = set()
    for obj in objs:
        for s in all_strings(obj):
            if API_KEY in s or encoded in s:
                holders.add((obj["kind"], obj["metadata"]["namespace"]))
    assert holders == {("Secret", ns) for ns in ("launch-system", "team-a", "team-b")}
    # and never as a literal env value
    env = env_of(agent_container(objs))
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "wandb-api-key-ci", "key": "password"}
    assert "value" not in env["WANDB_API_KEY"]


def test_api_key_secret_in_each_target_namespace(render) -> None:
    objs = render(files=(CHART / "ci" / "multi-namespace-values.yaml",), namespace="x")
    keys = [s for s in of_kind(objs, "Secret") if s["metadata"]["name"] == "wandb-api-key-ci"]
    assert {s["metadata"]["namespace"] for s in keys} == {"launch-system", "team-a", "team-b"}
    for s in keys:
        assert s["type"] == "kubernetes.io/basic-auth"
        assert secret_value(s, "password") == API_KEY


def test_external_api_key_secret(render) -> None:
    objs = render(files=(CHART / "ci" / "external-secret-values.yaml",), namespace="ml")
    ours = [s for s in of_kind(objs, "Secret") if s["metadata"]["labels"]["app.kubernetes.io/component"] != "extra"]
    assert not any(s["metadata"]["name"].startswith("wandb-api-key") for s in ours)
    extra = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in of_kind(objs, "Secret")} - {
        (s["metadata"]["namespace"], s["metadata"]["name"]) for s in ours}
    assert ("ml", "wandb-api-key-managed") in extra and ("training", "wandb-api-key-managed") in extra
    env = env_of(agent_container(objs))
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "wandb-api-key-managed"
    assert env["LAUNCH_AGENT_API_KEY_SECRET"]["value"] == "wandb-api-key-managed"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "huggingface", "key": "token"}
    assert env["INLINE_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "ci-launch-agent-secret-env", "key": "INLINE_TOKEN"}
    vols = {v["name"]: v for v in deployment(objs)["spec"]["template"]["spec"]["volumes"]}
    assert vols["git-creds"]["secret"]["secretName"] == "git-credentials-managed"


def test_use_external_wandb_secret_keeps_official_meaning(render) -> None:
    objs = render(files=(BASIC,), values={"agent": {"apiKey": "", "useExternalWandbSecret": True}}, namespace="ml")
    assert not [s for s in of_kind(objs, "Secret") if s["metadata"]["name"].startswith("wandb-api-key")]
    env = env_of(agent_container(objs))
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "wandb-api-key-ci"


def checksums(objs: list[dict]) -> dict[str, str]:
    return deployment(objs)["spec"]["template"]["metadata"]["annotations"]


def test_checksum_changes_when_any_secret_changes(render) -> None:
    base = {"gitCreds": "https://u:p@example.com", "azureStorageAccessKey": "k1",
            "additionalSecretEnvVars": [{"name": "TOKEN", "value": "t1"}]}
    ref = checksums(render(files=(BASIC,), values=base))
    changes = {
        "apiKey": {"agent": {"apiKey": "another-key"}},
        "gitCreds": {"gitCreds": "https://u:other@example.com"},
        "azure": {"azureStorageAccessKey": "k2"},
        "secretEnv": {"additionalSecretEnvVars": [{"name": "TOKEN", "value": "t2"}]},
    }
    for what, change in changes.items():
        got = checksums(render(files=(BASIC,), values={**base, **change}))
        assert got["checksum/secrets"] != ref["checksum/secrets"], what
        assert got["checksum/config"] == ref["checksum/config"], what
    got = checksums(render(files=(BASIC,), values={**base, "launchConfig": "queues: [other]\n"}))
    assert got["checksum/config"] != ref["checksum/config"]


def test_checksums_are_on_the_pod_template_not_the_deployment(render) -> None:
    dep = deployment(render(files=(BASIC,)))
    assert "checksum/secrets" in dep["spec"]["template"]["metadata"]["annotations"]
    assert not any(k.startswith("checksum/") for k in (dep["metadata"].get("annotations") or {}))
