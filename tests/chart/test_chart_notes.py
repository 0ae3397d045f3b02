"""NOTES.txt says what was installed and how to check on the agent.

helm renders NOTES only on install, which needs a cluster; here a copy of the chart renders
the same text through `tpl` inside a ConfigMap, with the chart's own helpers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from chart_checks import CHART, KUBE_VERSION

from localenv import helm

PROBE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: notes-probe
data:
  notes: {{ tpl (.Files.Get "notes-under-test.txt") . | quote }}
"""


@pytest.fixture(scope="module")
def notes_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("chart") / "launch-agent"
    shutil.copytree(CHART, copy)
    shutil.copy(CHART / "templates" / "NOTES.txt", copy / "notes-under-test.txt")
    (copy / "templates" / "notes-probe.yaml").write_text(PROBE)
    return copy


def notes(chart: Path, values_file: Path, *extra: str) -> str:
    out = helm.run("template", "ci", str(chart), "--namespace", "ml", "--kube-version", KUBE_VERSION,
                   "--values", str(values_file), "--show-only", "templates/notes-probe.yaml", *extra)
    return str(yaml.safe_load(out)["data"]["notes"])


def test_notes_for_our_agent(notes_chart: Path) -> None:
    text = notes(notes_chart, notes_chart / "ci" / "multi-namespace-values.yaml")
    assert "Deployment ci-launch-agent in namespace launch-system (2 replica(s))" in text
    assert "Queues:            team-a, team-b" in text
    assert "Target namespaces: launch-system, team-a, team-b" in text
    assert "kubectl -n launch-system rollout status deployment/ci-launch-agent" in text
    assert "/readyz" in text
    assert "helm test ci -n ml" in text


def test_notes_for_the_official_image_and_external_secret(notes_chart: Path) -> None:
    text = notes(notes_chart, notes_chart / "ci" / "external-secret-values.yaml",
                 "--set", "agent.image=wandb/launch-agent:0.17.3")
    assert "official W&B agent" in text
    assert "/readyz" not in text
    assert "wandb-api-key-managed (not created by this chart" in text


def test_notes_list_the_rbac_of_every_target_namespace(notes_chart: Path) -> None:
    text = notes(notes_chart, notes_chart / "ci" / "multi-namespace-values.yaml")
    for ns in ("launch-system", "team-a", "team-b"):
        assert f"kubectl -n {ns} get role,rolebinding ci-launch-agent -o yaml" in text


def test_notes_say_how_to_build_and_push_the_default_image(notes_chart: Path) -> None:
    text = notes(notes_chart, notes_chart / "ci" / "basic-values.yaml")
    assert "IMAGE NOT PUBLISHED: ghcr.io/launch-agent/agent:" in text
    assert "make image IMAGE=<registry>/<repository>/launch-agent:" in text
    assert "--set agent.image=<registry>/<repository>/launch-agent:" in text
    for image in ("registry.example.com/ml/launch-agent:0.1.0", "wandb/launch-agent:0.17.3"):
        other = notes(notes_chart, notes_chart / "ci" / "basic-values.yaml", "--set", f"agent.image={image}")
        assert "IMAGE NOT PUBLISHED" not in other


def test_a_chart_released_with_its_image_says_nothing_about_building(tmp_path: Path, notes_chart: Path) -> None:
    released = tmp_path / "launch-agent"
    shutil.copytree(notes_chart, released)
    chart_yaml = released / "Chart.yaml"
    text = chart_yaml.read_text()
    assert 'launch-agent.dev/image-published: "false"' in text
    chart_yaml.write_text(text.replace('launch-agent.dev/image-published: "false"',
                                       'launch-agent.dev/image-published: "true"'))
    assert "IMAGE NOT PUBLISHED" not in notes(released, released / "ci" / "basic-values.yaml")
