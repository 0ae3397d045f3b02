"""The chart refuses a kaniko builder that cannot build, in one line naming the key (real helm)."""

from __future__ import annotations

import pytest

API_KEY = "k" * 40
AWS = "environment: {type: aws, region: us-east-1}\n"


def _values(config: str, **extra: object) -> dict:
    return {"agent": {"apiKey": API_KEY}, "launchConfig": "queues: [q]\n" + config, **extra}


@pytest.mark.parametrize(("config", "extra", "needle"), [
    ("builder: {type: kaniko, destination: r.example/x}\n", {},
     "launchConfig: builder.build-context-store: a kaniko builder needs a build context store"),
    ("environment: {type: gcp, region: us}\nbuilder: {type: kaniko, build-context-store: 's3://b/c', "
     "destination: r.example/x}\n", {}, "\"s3://b/c\" needs environment.type aws, not gcp"),
    ("builder: {type: kaniko, build-context-store: 'gs://b', destination: r.example/x}\n", {},
     "\"gs://b\" needs environment.type gcp, not none"),
    (AWS + "builder: {type: kaniko, build-context-store: 'ftp://b', destination: r.example/x}\n", {},
     "is not an s3://, gs:// or https://<account>.blob.core.windows.net/<container> URI"),
    (AWS + "registry: {type: ecr, uri: myreg.azurecr.io/x}\nbuilder: {type: kaniko, build-context-store: "
     "'s3://b'}\n", {}, "registry.uri: \"myreg.azurecr.io/x\" is not a ecr URI"),
])
def test_builders_that_cannot_build_are_refused(render_error, config: str, extra: dict, needle: str) -> None:
    err = render_error(_values(config, **extra))
    assert needle in err, err
    assert len([ln for ln in err.splitlines() if "launchConfig:" in ln]) == 1  # one line (helm adds a --debug hint)


@pytest.mark.parametrize(("config", "extra"), [
    ("builder: {type: kaniko, destination: r.example/x}\n", {"kanikoPvcName": "contexts"}),
    (AWS + "builder: {type: kaniko, build-context-store: 's3://b/c', destination: r.example/x}\n", {}),
    ("environment: {type: azure}\nbuilder: {type: kaniko, build-context-store: "
     "'https://acct.blob.core.windows.net/builds/ctx', destination: myreg.azurecr.io/runs}\n", {}),
    (AWS + "registry: {type: ecr, uri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/runs}\n"
     "builder: {type: kaniko, build-context-store: 's3://b'}\n", {}),
    ("builder: {type: noop}\n", {}),
])
def test_builders_that_can_build_render(render, config: str, extra: dict) -> None:
    assert any(o["kind"] == "Deployment" for o in render(_values(config, **extra)))


def _agent_ns_rules(objs: list[dict], ns: str = "default") -> list[dict]:
    role = next(o for o in objs if o["kind"] == "Role" and o["metadata"]["namespace"] == ns)
    return role["rules"]


def test_kaniko_rbac_of_our_agent(render) -> None:
    keyless = ("environment: {type: azure}\nbuilder: {type: kaniko, build-context-store: "
               "'https://acct.blob.core.windows.net/builds/ctx', destination: myreg.azurecr.io/runs}\n")
    rules = _agent_ns_rules(render(_values(keyless)))
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]} in rules
    keyed = _agent_ns_rules(render(_values(keyless, azureStorageAccessKey="a2V5")))
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]} not in keyed
    s3 = AWS + "builder: {type: kaniko, build-context-store: 's3://b', destination: r.example/x}\n"
    with_config = _agent_ns_rules(render(_values(s3, kanikoDockerConfigSecret="regcred")))
    assert {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["regcred"], "verbs": ["get"]} in with_config
    assert not any("create" in r["verbs"] and r["resources"] == ["secrets"] for r in with_config)
