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
