"""Every values.yaml the generator writes renders with the real chart (helm template) and every
rendered object validates offline against the Kubernetes schemas (kubernetes-validate, strict)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chart_checks import CHART, KUBE_VERSION, VALIDATE_VERSIONS, of_kind
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from localenv import helm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from generator_helpers import AWS_ROLE, AZURE_ID, EXAMPLES, GCP_SA, run
from generator_strategies import agent_configs, dump, queue_configs

ENV = {"AZ_KEY": "storage-key", "WANDB_KEY": "0123456789abcdef0123456789abcdef01234567"}
QUEUES = [str(EXAMPLES / f"queue-{k}.yaml") for k in ("job", "pytorchjob", "volcano")]

CASES: dict[str, list[str]] = {
    "aws-kaniko": ["-c", str(EXAMPLES / "launch-config-aws-kaniko.yaml"), "-q", QUEUES[0],
                   "--identity", AWS_ROLE, "--namespace", "launch"],
    "gcp-kaniko": ["-c", str(EXAMPLES / "launch-config-gcp-kaniko.yaml"), "-q", QUEUES[1],
                   "--identity", GCP_SA, "--namespace", "launch", "--api-key-secret", "team-key"],
    "azure-kaniko-official": ["-c", str(EXAMPLES / "launch-config-azure-kaniko.yaml"), "--identity", AZURE_ID,
                              "--azure-storage-key-env", "AZ_KEY", "--inline-secrets",
                              "--agent-image", "wandb/launch-agent:0.22.1"],
    "noop-all-queues": ["-c", str(EXAMPLES / "launch-config-noop.yaml"), *[a for q in QUEUES for a in ("-q", q)],
                        "--namespace", "launch", "--api-key-env", "WANDB_KEY", "--inline-secrets"],
    "noop-no-queues": ["-c", str(EXAMPLES / "launch-config-noop.yaml"), "--git-creds-secret", "git"],
}


def generate(tmp: Path, argv: list[str]) -> Path:
    out = tmp / "values.yaml"
    res = run(["values", *argv, "-o", str(out)], ENV)
    assert res.code == 0, res.err
    return out


def render_and_validate(values_file: Path, namespace: str = "launch") -> list[dict[str, Any]]:
    objs = helm.template(CHART, values_files=[values_file], release="team", namespace=namespace,
                         kube_version=KUBE_VERSION)
    assert objs
    for obj in objs:
        for version in VALIDATE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for {version}: {exc.message}")
    return objs


def check_rbac(objs: list[dict[str, Any]], values: dict[str, Any], namespace: str = "launch") -> None:
    assert not of_kind(objs, "ClusterRole") and not of_kind(objs, "ClusterRoleBinding")
    roles = {r["metadata"]["namespace"]: r["rules"] for r in of_kind(objs, "Role")}
    agent_ns = values.get("namespace") or namespace
    assert set(roles) == {agent_ns, *values["additionalTargetNamespaces"]}
    rbac = values["rbac"]
    # what each namespace's Role must hold beyond the chart's defaults: extraRules everywhere,
    # agentNamespaceRules in the agent's namespace, rbac.namespaces.<ns>.rules in <ns> alone
    own = {ns: ((rbac.get("namespaces") or {}).get(ns) or {}).get("rules") or [] for ns in roles}
    expected = {ns: [*rbac["extraRules"], *(rbac["agentNamespaceRules"] if ns == agent_ns else []), *own[ns]]
                for ns in roles}
    granted = [*rbac["extraRules"], *rbac["agentNamespaceRules"], *(r for rs in own.values() for r in rs)]
    for ns, rules in roles.items():
        for rule in granted:
            assert (rule in rules) == (rule in expected[ns]), (ns, rule)
        for rule in rules:
            if "secrets" in rule["resources"]:
                assert "list" not in rule["verbs"] and "watch" not in rule["verbs"]


def test_every_example_is_rendered() -> None:
    used = {Path(arg) for argv in CASES.values() for arg in argv if arg.startswith(str(EXAMPLES))}
    assert used == set(EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_examples_render_and_validate(tmp_path: Path, case: str) -> None:
    values_file = generate(tmp_path, CASES[case])
    values = yaml.safe_load(values_file.read_text())
    objs = render_and_validate(values_file)
    check_rbac(objs, values)
    sa = of_kind(objs, "ServiceAccount")[0]
    assert (sa["metadata"].get("annotations") or {}) == values["serviceAccount"]["annotations"]
    config_maps = [o for o in of_kind(objs, "ConfigMap") if "launch-config.yaml" in (o.get("data") or {})]
    assert [c["data"]["launch-config.yaml"] for c in config_maps] == [values["launchConfig"]]


def test_azure_identity_labels_the_agent_pod(tmp_path: Path) -> None:
    values_file = generate(tmp_path, CASES["azure-kaniko-official"])
    deployment = of_kind(render_and_validate(values_file), "Deployment")[0]
    assert deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"


def test_updated_values_render(tmp_path: Path) -> None:
    target = tmp_path / "values.yaml"
    target.write_text("# ours\nreplicas: 1\nagent:\n  logFormat: json  # for the log pipeline\n")
    res = run(["values", *CASES["noop-all-queues"], "--update", str(target)], ENV)
    assert res.code == 0, res.err
    assert "# for the log pipeline" in target.read_text()
    check_rbac(render_and_validate(target), yaml.safe_load(target.read_text()))


VOLCANO_TASKS = {"tasks": [{"name": "main", "replicas": 1,
                            "template": {"spec": {"containers": [{"name": "main", "image": "${image_uri}"}]}}}]}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agent_configs(), st.lists(queue_configs(), max_size=3))
# Volcano Jobs in the agent's namespace and in another one: the rule is in both Roles, from
# agentNamespaceRules and from rbac.namespaces.a0.rules
@example(({"queues": ["q"], "entity": "a0", "environment": {"type": "aws", "region": "us-east-1"},
           "builder": {"type": "noop"}}, ["--identity", AWS_ROLE]),
         [{"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": {"namespace": "a0"},
           "spec": VOLCANO_TASKS},
          {"metadata": {}, "spec": {"template": {"spec": {"containers": [{"image": "${image_uri}"}]}}}},
          {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": {}, "spec": VOLCANO_TASKS}])
def test_valid_generated_input_always_renders(cfg: tuple[dict[str, Any], list[str]],
                                              queues: list[dict[str, Any]]) -> None:
    config, flags = cfg
    with tempfile.TemporaryDirectory(prefix="gen-chart-") as name:
        tmp = Path(name)
        argv = ["values", "-c", str(tmp / "c.yaml"), "-o", str(tmp / "values.yaml"), "--namespace", "launch", *flags]
        (tmp / "c.yaml").write_text(dump(config))
        for i, q in enumerate(queues):
            (tmp / f"q{i}.yaml").write_text(dump(q))
            argv += ["-q", str(tmp / f"q{i}.yaml")]
        res = run(argv, ENV)
        assert res.code in (0, 2) and "Traceback" not in res.err
        if res.code == 0:
            values_file = tmp / "values.yaml"
            check_rbac(render_and_validate(values_file), yaml.safe_load(values_file.read_text()))
