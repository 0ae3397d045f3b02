"""schemas/queue-config.schema.json: the Job-spec form, the custom-resource form, the wrapped form."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import schemas

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CASES: list[tuple[str, bool]] = [
    ("spec: {}", True),
    ("metadata: {namespace: ml, labels: {team: a}}\nspec:\n  template:\n    spec:\n      containers: [{image: x}]", True),
    ("apiVersion: batch/v1\nkind: Job\nspec: {backoffLimit: 2}", True),
    ("namespace: ml\nspec: {}", True),
    ("kubernetes:\n  metadata: {namespace: ml}", True),
    ("apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {name: 'run-${run_id}'}\nspec: {}", True),
    ("apiVersion: batch.volcano.sh/v1alpha1\nkind: Job\nspec: {tasks: []}", True),
    ("apiVersion: ray.io/v1\nkind: RayJob\ngroup: ray.io\nversion: v1", True),
    ("apiVersion: kubeflow.org/v1\nspec: {}", False),
    ("apiVersion: batch/v1\nkind: CronJob", False),
    ("kind: Deployment", False),
    ("metdata: {}", False),
    ("spec: []", False),
    ("metadata: {namespace: Not_A_Namespace}", False),
    ("metadata: {namespace: 'team-${project_name}'}", True),
    ("metadata: {labels: {n: 1}}", False),
    ("spec:\n  template:\n    spec:\n      containers: {image: x}", False),
    ("spec:\n  backoffLimit: -1", False),
    ("apiVersion: 'kubeflow.org'\nkind: PyTorchJob", False),
    ("apiVersion: kubeflow.org/v1\nkind: pytorchjob", False),
    ("kubernetes:\n  metadata: {}\nextra: 1", False),
    ("wait_for_ready: false\nwait_timeout: 60\nbuilder: {accelerator: {base_image: 'nvidia/cuda:12.4.1-runtime-ubuntu22.04'}}", True),
    ("- spec: {}", False),
]


@pytest.mark.parametrize(("text", "valid"), CASES, ids=[f"q{i}" for i in range(len(CASES))])
def test_queue_config_cases(text: str, valid: bool) -> None:
    assert schemas.validator("queue-config").is_valid(yaml.safe_load(text)) is valid


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("queue-*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    assert schemas.validator("queue-config").is_valid(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("launch-config-*.yaml")), ids=lambda p: p.name)
def test_example_agent_configs_are_valid(path: Path) -> None:
    assert schemas.validator("launch-config").is_valid(yaml.safe_load(path.read_text()))


def test_template_variables() -> None:
    ok = yaml.safe_load("spec:\n  backoffLimit: '{{retries}}'\n  ttlSecondsAfterFinished: '{{ ttl }}'\n")
    assert schemas.validator("queue-config").is_valid(ok)
    assert not schemas.validator("queue-config").is_valid({"spec": {"backoffLimit": "{{retries}} + 1"}})
