"""`values --update`: only the generated keys change; the user's comments, order and other keys stay."""

from __future__ import annotations

from pathlib import Path

import yaml
from generator_helpers import AWS_ROLE, EXAMPLES, run, write

import schemas

EXISTING = """\
# Team ML values. Reviewed by platform.
agent:
  # pinned on purpose
  image: ghcr.io/launch-agent/agent:1.2.3
  existingApiKeySecret: team-key
  labels:
    team: ml   # cost center
    azure.workload.identity/use: "true"
replicas: 1   # one is enough
serviceAccount:
  annotations:
    example.com/owner: me
    iam.gke.io/gcp-service-account: old@proj.iam.gserviceaccount.com
launchConfig: |
  queues: [old]
rbac:
  extraRules: []   # filled by the generator
networkPolicy:
  enabled: true
# the end
"""


def _update(tmp_path: Path, *flags: str) -> tuple[str, str]:
    target = write(tmp_path, "values.yaml", EXISTING)
    config = str(EXAMPLES / "launch-config-aws-kaniko.yaml")
    res = run(["values", "-c", config, "-q", str(EXAMPLES / "queue-volcano.yaml"), "--identity", AWS_ROLE,
               "--update", target, *flags])
    assert res.code == 0, res.err
    assert res.out == ""
    return Path(target).read_text(), config


def test_update_keeps_comments_order_and_other_keys(tmp_path: Path) -> None:
    text, config = _update(tmp_path)
    for kept in ("# Team ML values. Reviewed by platform.", "# pinned on purpose", "team: ml   # cost center",
                 "replicas: 1   # one is enough", "example.com/owner: me", "networkPolicy:\n  enabled: true",
                 "# the end", "image: ghcr.io/launch-agent/agent:1.2.3", "existingApiKeySecret: team-key"):
        assert kept in text, kept
    order = [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]
    assert order[:6] == ["agent", "replicas", "serviceAccount", "launchConfig", "rbac", "networkPolicy"]
    data = yaml.safe_load(text)
    assert data["launchConfig"] == Path(config).read_text()
    assert data["serviceAccount"]["annotations"] == {"example.com/owner": "me",
                                                     "eks.amazonaws.com/role-arn": AWS_ROLE}
    assert data["agent"]["labels"] == {"team": "ml"}  # the azure label is the generator's, and aws needs none
    assert data["rbac"]["extraRules"] == []
    assert data["rbac"]["namespaces"] == {"ml-batch": {"rules": [
        {"apiGroups": ["batch.volcano.sh"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "patch", "delete"]}]}}
    assert data["rbac"]["agentNamespaceRules"] == [{"apiGroups": ["batch"], "resources": ["jobs/status"],
                                                    "verbs": ["get"]}]
    assert data["additionalTargetNamespaces"] == ["ml-batch"]
    assert schemas.validator("values").is_valid(data)


def test_update_is_idempotent(tmp_path: Path) -> None:
    first, config = _update(tmp_path)
    res = run(["values", "-c", config, "-q", str(EXAMPLES / "queue-volcano.yaml"), "--identity", AWS_ROLE,
               "--update", str(tmp_path / "values.yaml")])
    assert res.code == 0
    assert (tmp_path / "values.yaml").read_text() == first


def test_update_replaces_the_api_key_source_only_when_asked(tmp_path: Path) -> None:
    text, _ = _update(tmp_path, "--api-key-secret", "new-key")
    agent = yaml.safe_load(text)["agent"]
    assert agent["existingApiKeySecret"] == "new-key" and "apiKey" not in agent


def test_update_of_an_invalid_values_file_changes_nothing(tmp_path: Path) -> None:
    target = write(tmp_path, "values.yaml", "agent:\n  imagePullpolicy: Always\n")
    res = run(["values", "-c", str(EXAMPLES / "launch-config-noop.yaml"), "--update", target])
    assert res.code == 2
    assert res.lines == [f"{target}:2:3: agent.imagePullpolicy: unknown key; did you mean imagePullPolicy?"]
    assert Path(target).read_text() == "agent:\n  imagePullpolicy: Always\n"


def test_update_of_a_broken_or_missing_file(tmp_path: Path) -> None:
    config = str(EXAMPLES / "launch-config-noop.yaml")
    target = write(tmp_path, "values.yaml", "agent: [\n")
    res = run(["values", "-c", config, "--update", target])
    assert res.code == 2 and len(res.lines) == 1 and res.lines[0].startswith(f"{target}:2:1: YAML syntax error")
    res = run(["values", "-c", config, "--update", str(tmp_path / "none.yaml")])
    assert res.code == 2 and res.lines == [f"{tmp_path / 'none.yaml'}: no such file"]
