"""Chart values for jobs: the agent's own image for code-fetching init containers, per-user API
key Secrets (opt-in, with the one extra RBAC rule they need), and the official code PVC."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from localenv import helm

CHART = Path(__file__).resolve().parents[2] / "charts" / "launch-agent"
BASE = {"agent": {"apiKey": "local-" + "a" * 40}, "launchConfig": "queues: [q]\n"}


def render(values: dict) -> list[dict]:
    merged = {**BASE, **values, "agent": {**BASE["agent"], **values.get("agent", {})}}
    return helm.template(CHART, merged)


def agent_env(objs: list[dict]) -> dict[str, dict]:
    dep = next(o for o in objs if o["kind"] == "Deployment")
    return {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def secret_rules(objs: list[dict]) -> list[dict]:
    return [r for o in objs if o["kind"] == "Role" for r in o["rules"] if "secrets" in r["resources"]]


def test_the_agent_knows_its_own_image_and_per_user_keys_are_off_by_default():
    objs = render({"agent": {"image": "registry.example/launch-agent:1.2"}})
    env = agent_env(objs)
    assert env["LAUNCH_AGENT_IMAGE"]["value"] == "registry.example/launch-agent:1.2"
    assert "LAUNCH_AGENT_PER_USER_KEYS" not in env and "WANDB_LAUNCH_CODE_PVC_NAME" not in env
    assert all(r.get("resourceNames") and r["verbs"] == ["get"] for r in secret_rules(objs))


def test_per_user_keys_turn_on_with_secrets_create_only():
    objs = render({"agent": {"perUserApiKeys": True}})
    assert agent_env(objs)["LAUNCH_AGENT_PER_USER_KEYS"]["value"] == "true"
    creates = [r for r in secret_rules(objs) if "create" in r["verbs"]]
    assert creates and all(r["verbs"] == ["create"] and "resourceNames" not in r for r in creates)


def test_the_code_pvc_is_mounted_where_the_agent_is_told():
    objs = render({"codePvc": {"name": "job-code", "mountPath": "/home/launch_agent/code"}})
    env = agent_env(objs)
    assert env["WANDB_LAUNCH_CODE_PVC_NAME"]["value"] == "job-code"
    assert env["WANDB_LAUNCH_CODE_PVC_MOUNT_PATH"]["value"] == "/home/launch_agent/code"
    pod = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert {"name": "code-pvc", "persistentVolumeClaim": {"claimName": "job-code"}} in pod["volumes"]
    assert {"name": "code-pvc", "mountPath": "/home/launch_agent/code"} in pod["containers"][0]["volumeMounts"]


def test_the_generator_sets_per_user_keys(tmp_path):
    cfg = tmp_path / "launch-config.yaml"
    cfg.write_text("queues: [q]\nentity: acme\n")
    proc = subprocess.run([sys.executable, "-m", "generator", "values", "-c", str(cfg), "--per-user-keys"],
                          capture_output=True, text=True, timeout=120, check=False,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["agent"]["perUserApiKeys"] is True


def test_git_credentials_reach_every_target_namespace_and_the_agent_names_them():
    objs = render({"gitCreds": "https://bot:token@git.example", "additionalTargetNamespaces": ["ml"],
                   "namespace": "wandb"})
    secrets = [o for o in objs if o["kind"] == "Secret" and "git-creds" in o["metadata"]["name"]]
    assert sorted(s["metadata"]["namespace"] for s in secrets) == ["ml", "wandb"]
    assert len({s["metadata"]["name"] for s in secrets}) == 1 and all(".git-credentials" in s["data"] for s in secrets)
    env = agent_env(objs)
    assert env["LAUNCH_AGENT_GIT_CREDENTIALS_SECRET"]["value"] == secrets[0]["metadata"]["name"]
    # The agent's own mount still reads the copy in its namespace.
    pod = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "git-creds"]
    assert volume["secret"]["secretName"] == secrets[0]["metadata"]["name"]


def test_an_existing_git_credentials_secret_is_named_and_nothing_is_rendered():
    objs = render({"existingGitCredsSecret": "my-git", "additionalTargetNamespaces": ["ml"]})
    assert agent_env(objs)["LAUNCH_AGENT_GIT_CREDENTIALS_SECRET"]["value"] == "my-git"
    assert not [o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "my-git"]
    assert "LAUNCH_AGENT_GIT_CREDENTIALS_SECRET" not in agent_env(render({}))
