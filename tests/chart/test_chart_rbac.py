"""RBAC: a Role + RoleBinding per target namespace, no broader than the queues need."""

from __future__ import annotations

from chart_checks import API_KEY, BASIC, CHART, grants, of_kind, roles_by_namespace


def test_rolebindings_equal_target_namespaces(render) -> None:
    objs = render(files=(CHART / "ci" / "multi-namespace-values.yaml",), namespace="helm-ns")
    bindings = {b["metadata"]["namespace"] for b in of_kind(objs, "RoleBinding")}
    assert bindings == {"launch-system", "team-a", "team-b"}
    assert set(roles_by_namespace(objs)) == bindings
    dep = next(o for o in objs if o["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LAUNCH_AGENT_TARGET_NAMESPACES"].split(",") == ["launch-system", "team-a", "team-b"]
    for b in of_kind(objs, "RoleBinding"):
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": b["metadata"]["name"]}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "wandb-launch-serviceaccount-ci", "namespace": "launch-system"}]


def test_default_targets_only_the_agent_namespace(render) -> None:
    objs = render(files=(BASIC,), namespace="ml")
    assert {b["metadata"]["namespace"] for b in of_kind(objs, "RoleBinding")} == {"ml"}


def test_duplicate_target_namespaces_collapse(render) -> None:
    objs = render(files=(BASIC,), values={"additionalTargetNamespaces": ["ml", "other"]}, namespace="ml")
    assert sorted(b["metadata"]["namespace"] for b in of_kind(objs, "RoleBinding")) == ["ml", "other"]


def test_default_role_is_what_interfaces_md_lists(render) -> None:
    role = roles_by_namespace(render(files=(BASIC,), namespace="ml"))["ml"]
    for verb in ("create", "get", "list", "watch", "patch", "delete"):
        assert grants(role, "batch", "jobs", verb)
    assert not grants(role, "batch", "jobs", "update")
    assert grants(role, "", "pods", "watch") and not grants(role, "", "pods", "create")
    assert grants(role, "", "pods/log", "get")
    assert grants(role, "", "events", "list")
    # Secrets: get on the API-key Secret only.
    assert grants(role, "", "secrets", "get", name="wandb-api-key-ci")
    assert not grants(role, "", "secrets", "get", name="some-other-secret")
    assert not grants(role, "", "secrets", "list") and not grants(role, "", "secrets", "create")
    assert not any("*" in r["verbs"] or "*" in r.get("resources", []) for r in role["rules"])
    assert not grants(role, "batch.volcano.sh", "jobs", "create")
    assert not grants(role, "coordination.k8s.io", "leases", "create")


def test_official_image_gets_the_secret_rights_it_needs(render) -> None:
    objs = render(files=(BASIC,), values={"agent": {"image": "wandb/launch-agent:0.17.3"}}, namespace="ml")
    role = roles_by_namespace(objs)["ml"]
    assert grants(role, "", "secrets", "create", name="anything")  # Kubernetes cannot pin create to a name
    for verb in ("get", "delete"):
        assert grants(role, "", "secrets", verb, name="wandb-api-key-ci")
        assert not grants(role, "", "secrets", verb, name="anything")
    assert not grants(role, "", "secrets", "list")


def test_extra_rules_in_every_target_agent_rules_only_in_agent_namespace(render) -> None:
    values = {
        "additionalTargetNamespaces": ["t1", "t2"],
        "rbac": {
            "extraRules": [{"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": ["create", "get"]}],
            "agentNamespaceRules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}],
        },
    }
    roles = roles_by_namespace(render(files=(BASIC,), values=values, namespace="ml"))
    assert set(roles) == {"ml", "t1", "t2"}
    for ns, role in roles.items():
        assert grants(role, "kubeflow.org", "pytorchjobs", "create"), ns
        assert grants(role, "", "configmaps", "create") == (ns == "ml"), ns


def test_volcano_switch_adds_volcano_rules(render) -> None:
    on = roles_by_namespace(render(files=(BASIC,), values={"volcano": True}, namespace="ml"))["ml"]
    off = roles_by_namespace(render(files=(BASIC,), values={"volcano": False}, namespace="ml"))["ml"]
    assert grants(on, "batch.volcano.sh", "jobs", "create")
    assert not grants(off, "batch.volcano.sh", "jobs", "create")


def test_leases_only_with_replicas(render) -> None:
    objs = render(files=(BASIC,), values={"replicas": 3, "additionalTargetNamespaces": ["t1"]}, namespace="ml")
    roles = roles_by_namespace(objs)
    assert grants(roles["ml"], "coordination.k8s.io", "leases", "create")
    assert grants(roles["ml"], "coordination.k8s.io", "leases", "update", name="ci-launch-agent-leader")
    assert not grants(roles["ml"], "coordination.k8s.io", "leases", "update", name="other")
    assert not grants(roles["t1"], "coordination.k8s.io", "leases", "create")


def test_official_kaniko_builder_gets_build_rules_in_agent_namespace(render) -> None:
    values = {
        "agent": {"image": "wandb/launch-agent:0.17.3", "apiKey": API_KEY},
        "additionalTargetNamespaces": ["t1"],
        "launchConfig": "queues: [q]\nenvironment: {type: aws, region: us-east-1}\nbuilder:\n  type: kaniko\n"
                        "  build-context-store: s3://contexts\n",
    }
    roles = roles_by_namespace(render(values=values, namespace="ml"))
    assert grants(roles["ml"], "", "configmaps", "create")
    assert grants(roles["ml"], "batch", "jobs/status", "get")
    assert not grants(roles["t1"], "", "configmaps", "create")


def test_sweep_schedulers_keep_their_records_in_the_agent_namespace(render) -> None:
    roles = roles_by_namespace(render(files=(BASIC,), values={"additionalTargetNamespaces": ["t1"]}, namespace="ml"))
    for verb in ("create", "get", "list", "patch", "delete"):
        assert grants(roles["ml"], "", "configmaps", verb), verb
    assert not grants(roles["ml"], "", "configmaps", "update") and not grants(roles["ml"], "", "configmaps", "watch")
    assert not grants(roles["t1"], "", "configmaps", "create")
    official = roles_by_namespace(render(files=(BASIC,), values={"agent": {"image": "wandb/launch-agent:0.17.3"}},
                                         namespace="ml"))
    assert not grants(official["ml"], "", "configmaps", "create"), "the official agent runs schedulers as processes"
