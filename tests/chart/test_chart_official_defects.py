"""One test per defect of the official chart (shared/reference/official-chart-defects.md).

Each asserts a property that the official chart 0.13.12 violates and ours must keep.
"""

from __future__ import annotations

import base64

import yaml
from chart_checks import (
    API_KEY,
    BASIC,
    CHART,
    OFFICIAL_STYLE,
    agent_container,
    deployment,
    env_of,
    of_kind,
    one,
)

EVERYTHING = {
    "gitCreds": "https://u:p@example.com",
    "azureStorageAccessKey": "azkey",
    "additionalSecretEnvVars": [{"name": "TOKEN", "value": "t"}],
    "sshAuthSecrets": [{"name": "deploy-key", "host": "github.com"}],
    "kanikoPvcName": "ctx",
}


def referenced_objects(objs: list[dict]) -> set[tuple[str, str]]:
    """(kind, name) of every Secret/ConfigMap the agent pod reads."""
    spec = deployment(objs)["spec"]["template"]["spec"]
    refs: set[tuple[str, str]] = set()
    for v in spec["volumes"]:
        if "secret" in v:
            refs.add(("Secret", v["secret"]["secretName"]))
        if "configMap" in v:
            refs.add(("ConfigMap", v["configMap"]["name"]))
    for e in agent_container(objs)["env"]:
        src = e.get("valueFrom", {})
        if "secretKeyRef" in src:
            refs.add(("Secret", src["secretKeyRef"]["name"]))
        if "configMapKeyRef" in src:
            refs.add(("ConfigMap", src["configMapKeyRef"]["name"]))
    return refs


def test_d1_rendered_secrets_are_in_the_agent_namespace(render) -> None:
    objs = render(files=(BASIC,), values={**EVERYTHING, "namespace": "ml-agents"}, namespace="elsewhere")
    ns = deployment(objs)["metadata"]["namespace"]
    assert ns == "ml-agents"
    rendered = {(o["kind"], o["metadata"]["name"]): o for o in objs if o["metadata"].get("namespace") == ns}
    refs = referenced_objects(objs)
    ours = {r for r in refs if r[1] not in ("deploy-key",)}
    assert ours, refs
    for ref in ours:
        assert ref in rendered, f"{ref} is read by the pod but not rendered in {ns}"
    assert all(o["metadata"]["namespace"] != "wandb" for o in objs)


def test_d2_two_releases_in_one_namespace_have_disjoint_names(render) -> None:
    def names(release: str) -> set[tuple[str, str, str]]:
        objs = render(files=(BASIC,), values={**EVERYTHING, "additionalTargetNamespaces": ["shared"]},
                      release=release, namespace="ml")
        return {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs}

    a, b = names("alpha"), names("beta")
    assert a and b and not (a & b), a & b


def test_d3_user_strings_are_quoted(render) -> None:
    values = {
        "agent": {"apiKey": "8080"},
        "gitCreds": "true",
        "additionalEnvVars": [{"name": "A", "value": "a: b"}, {"name": "B", "value": "#x"}, {"name": "C", "value": "true"}],
    }
    objs = render(files=(BASIC,), values=values)
    env = env_of(agent_container(objs))
    assert (env["A"]["value"], env["B"]["value"], env["C"]["value"]) == ("a: b", "#x", "true")
    key = one(objs, "Secret", "wandb-api-key")
    assert base64.b64decode(key["data"]["password"]).decode() == "8080"
    git = one(objs, "Secret", "git-creds")
    assert base64.b64decode(git["data"][".git-credentials"]).decode().strip() == "true"


def test_d4_disruption_budget_never_blocks_a_drain(render) -> None:
    assert not of_kind(render(files=(BASIC,), values={"agent": {"minAvailable": 1}}), "PodDisruptionBudget")
    objs = render(files=(BASIC,), values={"replicas": 2, "namespace": "agents"}, namespace="other")
    (pdb,) = of_kind(objs, "PodDisruptionBudget")
    dep = deployment(objs)
    assert pdb["metadata"]["namespace"] == dep["metadata"]["namespace"] == "agents"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]


def test_d5_rbac_no_broader_than_the_queues_need(render) -> None:
    objs = render(files=(CHART / "ci" / "custom-resources-values.yaml",), namespace="ml")
    assert not of_kind(objs, "ClusterRole")
    for role in of_kind(objs, "Role"):
        for rule in role["rules"]:
            if "secrets" in rule.get("resources", []):
                assert rule["verbs"] == ["get"] and rule["resourceNames"] == ["wandb-api-key-ci"]
        assert any("kubeflow.org" in r.get("apiGroups", []) and "pytorchjobs" in r["resources"] and "create" in r["verbs"]
                   for r in role["rules"]), role["metadata"]["namespace"]
    plain = render(files=(BASIC,), namespace="ml")
    assert not any("batch.volcano.sh" in r.get("apiGroups", []) for role in of_kind(plain, "Role") for r in role["rules"])


def test_d6_probes_pod_security_context_read_only_root(render) -> None:
    objs = render(files=(BASIC,))
    container = agent_container(objs)
    assert container["livenessProbe"] and container["readinessProbe"]
    pod_sc = deployment(objs)["spec"]["template"]["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_d7_schema_rejects_typos(render_error) -> None:
    assert "imagePullpolicy" in render_error({"agent": {"imagePullpolicy": "Always"}}, files=(BASIC,))
    assert "additionalTargetNamespace" in render_error({"additionalTargetNamespace": ["a"]}, files=(BASIC,))
    assert (CHART / "values.schema.json").is_file()


def test_d8_standard_labels_on_every_object(render) -> None:
    for obj in render(files=(BASIC,), values=EVERYTHING):
        labels = obj["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"):
            assert key in labels, (obj["kind"], obj["metadata"]["name"], key)


def test_d9_api_key_rotation_rolls_the_pod(render) -> None:
    def pod_annotations(key: str) -> dict:
        return deployment(render(files=(BASIC,), values={"agent": {"apiKey": key}}))["spec"]["template"]["metadata"]["annotations"]

    assert pod_annotations(API_KEY)["checksum/secrets"] != pod_annotations(API_KEY + "x")["checksum/secrets"]


def test_d10_release_namespace_is_honoured(render) -> None:
    objs = render(files=(BASIC,), values=EVERYTHING, namespace="team-a")
    assert {o["metadata"]["namespace"] for o in objs} == {"team-a"}
    env = env_of(agent_container(objs))
    assert env["LAUNCH_AGENT_TARGET_NAMESPACES"]["value"] == "team-a"


def test_d11_placeholder_or_missing_launch_config_fails(render_error) -> None:
    official_default = "queues:\n- <YOUR QUEUE NAME>\nmax_jobs: 10\nbuilder:\n  type: noop\n"
    assert "launchConfig" in render_error({"agent": {"apiKey": API_KEY}, "launchConfig": official_default})
    assert "launchConfig: required" in render_error({"agent": {"apiKey": API_KEY}})
    assert "launchConfig" in render_error({"agent": {"apiKey": API_KEY}, "launchConfig": "queues: [a\n"})


def test_d12_ssh_host_keys_are_checked(render) -> None:
    tofu = one(render(files=(BASIC,), values={"sshAuthSecrets": [{"name": "k", "host": "github.com"}]}), "ConfigMap", "ssh-config")
    assert "StrictHostKeyChecking no" not in tofu["data"]["config"]
    assert "/dev/null" not in tofu["data"]["config"]
    pinned = render(files=(CHART / "ci" / "ssh-and-git-values.yaml",))
    cm = one(pinned, "ConfigMap", "ssh-config")
    assert "StrictHostKeyChecking yes" in cm["data"]["config"]
    assert cm["data"]["known_hosts"].startswith("github.com ssh-ed25519 ")
    mounts = {m["mountPath"]: m for m in agent_container(pinned)["volumeMounts"]}
    assert mounts["/home/launch_agent/.ssh/known_hosts"]["subPath"] == "known_hosts"


def test_d13_volcano_is_a_live_switch(render) -> None:
    def volcano(flag: bool) -> bool:
        objs = render(files=(BASIC,), values={"volcano": flag})
        return any("batch.volcano.sh" in r.get("apiGroups", []) for role in of_kind(objs, "Role") for r in role["rules"])

    assert volcano(True) and not volcano(False)


def test_d14_pinned_image_is_not_pulled_on_every_restart(render) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["agent"]["imagePullPolicy"] == "IfNotPresent"
    assert agent_container(render(files=(BASIC,)))["imagePullPolicy"] == "IfNotPresent"


def test_d15_secret_env_vars_from_an_existing_secret(render) -> None:
    values = {"additionalSecretEnvVars": [{"name": "TOKEN", "secretKeyRef": {"name": "vault-synced", "key": "token"}}]}
    objs = render(files=(BASIC,), values=values)
    env = env_of(agent_container(objs))
    assert env["TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "vault-synced", "key": "token"}
    assert not [s for s in of_kind(objs, "Secret") if "secret-env" in s["metadata"]["name"]]


def test_official_style_values_are_accepted(render) -> None:
    assert render(files=(OFFICIAL_STYLE,))
