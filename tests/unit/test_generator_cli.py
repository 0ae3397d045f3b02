"""The commands other than `values`: validate, queue, rbac, schema; and --help everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from generator_helpers import EXAMPLES, REPO, run, write

from generator.problems import Problem


@pytest.mark.parametrize("command", [[], ["values"], ["validate"], ["queue"], ["rbac"], ["schema"]])
def test_help_on_every_command(command: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "generator", *command, "--help"], capture_output=True, text=True,
                          cwd=REPO, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m generator")


def test_usage_error_exits_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "generator", "values"], capture_output=True, text=True,
                          cwd=REPO, check=False)
    assert proc.returncode == 2 and "the following arguments are required: -c/--config" in proc.stderr


def test_problem_format() -> None:
    assert str(Problem("f.yaml", "bad", 3, 7, "builder.type")) == "f.yaml:3:7: builder.type: bad"
    assert str(Problem("f.yaml", "gone")) == "f.yaml: gone"


# --------------------------------------------------------------------------------------- validate


def test_validate_examples() -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    res = run(["validate", *files])
    assert res.code == 0, res.err
    assert len(res.out.splitlines()) == len(files)


def test_validate_reports_all_errors_of_all_files(tmp_path: Path) -> None:
    config = write(tmp_path, "launch-config.yaml", "queues: [q]\nmax_jobs: lots\nenvironment: {type: local}\n")
    queue = write(tmp_path, "queue.yaml", "apiVersion: kubeflow.org/v1\nmetadata: {namespace: x}\n")
    vals = write(tmp_path, "values.yaml", "agent:\n  imagePullPolicy: Sometimes\nlaunchConfig: |\n  queues: []\n")
    res = run(["validate", config, queue, vals])
    assert res.code == 2
    assert res.lines == [
        f"{config}:2:11: max_jobs: 'lots' is not allowed: An integer: the most runs launched at once by this agent;"
        " -1 means no limit. Default 1.",
        f"{config}:3:14: environment: missing required key 'region'",
        f"{config}:3:21: environment.type: 'local' is not allowed; one of: aws, gcp, azure, null",
        f"{queue}:1:1: missing required key 'kind'",
        f"{vals}:2:20: agent.imagePullPolicy: 'Sometimes' is not allowed; one of: Always, IfNotPresent, Never",
        f"{vals}:4:11: launchConfig: queues: needs at least 1 entry",
    ]


def test_validate_cross_checks_values_against_queues(tmp_path: Path) -> None:
    queue = str(EXAMPLES / "queue-pytorchjob.yaml")
    vals = write(tmp_path, "values.yaml", "additionalTargetNamespaces: [other]\nlaunchConfig: |\n  queues: [q]\n")
    res = run(["validate", vals, queue])
    assert res.code == 2
    assert res.lines == [
        f"{queue}:6:14: metadata.namespace: namespace ml-distributed is not a target of {vals} "
        "(additionalTargetNamespaces)",
        f"{queue}:3:7: kind: {vals} grants no rule for PyTorchJob (kubeflow.org/v1) in ml-distributed",
    ]
    out = tmp_path / "generated.yaml"
    assert run(["values", "-c", str(EXAMPLES / "launch-config-noop.yaml"), "-q", queue, "-o", str(out)]).code == 0
    assert run(["validate", str(out), queue]).code == 0


def test_validate_needs_a_known_kind(tmp_path: Path) -> None:
    odd = write(tmp_path, "odd.yaml", "hello: world\n")
    res = run(["validate", odd])
    assert res.code == 2 and res.lines == [f"{odd}:1:1: cannot tell whether this is an agent config, a queue "
                                           "config or a values file; pass --as"]
    res = run(["validate", "--as", "launch-config", odd])
    assert res.code == 2 and res.lines[0].startswith(f"{odd}:1:1: missing required key 'queues'")


# ------------------------------------------------------------------------------------------ queue


def test_queue_preview_is_the_agents_manifest() -> None:
    from agent.manifest import ManifestSettings, build_workload

    queue = EXAMPLES / "queue-pytorchjob.yaml"
    res = run(["queue", "-q", str(queue), "--image", "ghcr.io/me/train:1", "--run-id", "r1", "--entity", "team",
               "--project", "proj"])
    assert res.code == 0, res.err
    shown = list(yaml.safe_load_all(res.out))
    expected = build_workload(
        {"run_id": "r1", "entity": "team", "project": "proj", "name": "", "author": "",
         "docker": {"docker_image": "ghcr.io/me/train:1"},
         "resource_args": {"kubernetes": yaml.safe_load(queue.read_text())}, "overrides": {}},
        item_id="preview-item", queue="queue-pytorchjob",
        settings=ManifestSettings(agent_namespace="default", target_namespaces=("ml-distributed",),
                                  api_key_secret="wandb-api-key", agent_identity="launch-agent",
                                  queue_entity="team"))
    assert shown == expected
    pod = shown[-1]["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert pod["image"] == "ghcr.io/me/train:1" and pod["securityContext"]["allowPrivilegeEscalation"] is False


def test_queue_preview_of_a_job_substitutes_macros() -> None:
    res = run(["queue", "-q", str(EXAMPLES / "queue-job.yaml"), "--image", "img:1", "--run-id", "xyz"])
    job = yaml.safe_load(res.out)
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "ml-jobs"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 60
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"
    assert "${" not in res.out


def test_queue_preview_refusal_is_bad_input(tmp_path: Path) -> None:
    queue = write(tmp_path, "q.yaml", "spec:\n  template:\n    spec:\n      hostPID: true\n      containers: [{}]\n")
    res = run(["queue", "-q", queue])
    assert res.code == 2 and len(res.lines) == 1
    assert res.lines[0].startswith(f"{queue}: the agent refuses this queue config: pod-security-baseline")


# ------------------------------------------------------------------------------------------- rbac


def test_rbac_explains_every_rule() -> None:
    res = run(["rbac", "-c", str(EXAMPLES / "launch-config-gcp-kaniko.yaml"), "-q",
               str(EXAMPLES / "queue-pytorchjob.yaml"), "-q", str(EXAMPLES / "queue-job.yaml"),
               "--namespace", "launch", "--format", "json"])
    assert res.code == 0, res.err
    table = json.loads(res.out)
    assert [b["namespace"] for b in table] == ["launch", "ml-distributed", "ml-jobs"]
    launch = {f"{r['apiGroup']}/{r['resource']}": r for r in table[0]["rules"]}
    assert launch["batch/jobs/status"]["why"] == ["builder kaniko: build Jobs in the agent namespace"]
    distributed = {f"{r['apiGroup']}/{r['resource']}": r for r in table[1]["rules"]}
    assert distributed["kubeflow.org/pytorchjobs"]["why"] == [
        f"queue {EXAMPLES / 'queue-pytorchjob.yaml'}: PyTorchJob (kubeflow.org/v1)"]
    assert "batch/jobs/status" not in distributed
    # PyTorchJob only where its queue launches: not in the agent's namespace, not in ml-jobs
    assert "kubeflow.org/pytorchjobs" not in launch
    assert "kubeflow.org/pytorchjobs" not in {f"{r['apiGroup']}/{r['resource']}" for r in table[2]["rules"]}
    for block in table:
        for rule in block["rules"]:
            assert rule["why"] and "list" not in rule["verbs"] if rule["resource"] == "secrets" else True
    azure = run(["rbac", "-c", str(EXAMPLES / "launch-config-azure-kaniko.yaml"), "--agent-image",
                 "wandb/launch-agent:0.22.1"])
    assert azure.code == 0, azure.err
    assert "secrets [azure-storage-access-key]" in azure.out
    text = run(["rbac", "-c", str(EXAMPLES / "launch-config-noop.yaml")]).out
    assert text.splitlines()[0] == "namespace <release namespace> (agent namespace)"
    assert text.rstrip().endswith("cluster-wide: nothing (no ClusterRole, no ClusterRoleBinding)")


# ----------------------------------------------------------------------------------------- schema


def test_schema_check_matches_the_chart_engineers_files() -> None:
    from generator import chart_schema

    res = run(["schema", "--check"])
    stale = [p for p, text in chart_schema.expected_files().items() if not p.exists() or p.read_text() != text]
    assert res.code == (1 if stale else 0)


def test_secret_values_are_never_echoed(tmp_path: Path) -> None:
    vals = write(tmp_path, "values.yaml", "launchConfig: 'queues: [q]'\nagent:\n  apiKey: [hunter2]\n"
                                          "gitCreds: {token: hunter3}\n")
    res = run(["validate", vals])
    assert res.code == 2 and len(res.lines) == 2
    assert "hunter" not in res.err and "<secret value hidden>" in res.err
