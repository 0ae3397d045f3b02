"""A static linter over the rendered chart: kube-score (pinned Go module, localenv/tools/kube-score),
its default checks, every ci value set and the official-style values.

No finding is left unexplained: the checks whose advice the chart deliberately does not follow are
listed below with the reason, one place, and anything else fails. The raw count (what kube-score
prints with nothing accepted) is written to the results directory next to the official chart's
(rendered from $OFFICIAL_LAUNCH_AGENT_CHART when given, else the figure recorded in
tests/fixtures/official-chart-lint.json).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from security_helpers import ROOT, write_figures

from localenv import helm, tools

CHART = ROOT / "charts" / "launch-agent"
OFFICIAL_STYLE = ROOT / "tests" / "fixtures" / "official-style-values.yaml"
RECORDED_OFFICIAL = ROOT / "tests" / "fixtures" / "official-chart-lint.json"
VALUE_SETS = [*sorted((CHART / "ci").glob("*.yaml")), OFFICIAL_STYLE]
KUBE_VERSION = "v1.33"

# Default-check advice the chart does not take, and why (check id -> reason).
ACCEPTED = {
    "container-image-pull-policy": "IfNotPresent with a pinned tag: no registry round trip on a restart, and "
                                   "clusters whose images are preloaded (localenv) keep working; Always is one "
                                   "value away (agent.imagePullPolicy)",
    "container-security-context-user-group-id": "uid/gid 1000 are the users the agent images (ours and the "
                                                "official one) are built for; the pods run non-root with a "
                                                "read-only root and no host mounts",
    "container-ephemeral-storage-request-and-limit": "an ephemeral-storage request makes the pod unschedulable "
                                                     "on nodes that do not report that resource (kwok, some "
                                                     "virtual kubelets); set it in agent.resources where nodes do",
    "pod-networkpolicy": "networkPolicy.enabled renders one (ci/multi-namespace-values.yaml); it is off by "
                         "default, like the official chart, because a default-deny ingress cuts metrics scraping",
    "deployment-strategy": "one agent polls a queue at a time: Recreate with one replica, RollingUpdate with "
                           "leader election when replicas > 1",
    "deployment-replicas": "one replica by default (the official agent cannot share a queue); replicas: 2 turns "
                           "on leader election",
    "pod-probes": "only the helm test pod lacks a readiness probe: it runs to completion and serves nothing",
}

# Advice accepted for one value set only (value set stem -> check id -> reason).
ACCEPTED_FOR = {
    "official-style-values": {"container-image-tag": "the values written for the official chart name "
                                                     "wandb/launch-agent:latest themselves"},
}


def kube_score(manifests: list[dict[str, Any]], tmp: Path) -> list[tuple[str, str, int]]:
    """(object, check id, grade) of every failing default check (grade 1 critical, 5 warning)."""
    path = tmp / "rendered.json"
    path.write_text("\n---\n".join(json.dumps(o) for o in manifests))
    proc = subprocess.run([str(tools.binary("kube-score")), "score", "-o", "json", "--kubernetes-version",
                           KUBE_VERSION, str(path)], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr  # 1: findings
    report = json.loads(proc.stdout)
    return [(o["object_name"], c["check"]["id"], c["grade"]) for o in report for c in o["checks"]
            if not c["skipped"] and c["grade"] in (1, 5)]


FIGURES: dict[str, dict[str, int]] = {}


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=[p.stem for p in VALUE_SETS])
def test_no_unexplained_findings(values_file: Path, tmp_path: Path) -> None:
    objs = helm.template(CHART, values_files=(values_file,), release="lint", namespace="wandb")
    findings = kube_score(objs, tmp_path)
    accepted = {**ACCEPTED, **ACCEPTED_FOR.get(values_file.stem, {})}
    unexplained = [f for f in findings if f[1] not in accepted]
    FIGURES[values_file.stem] = {"raw": len(findings), "unexplained": len(unexplained)}
    assert unexplained == [], f"kube-score findings on {values_file.name}: {unexplained}"
    if len(FIGURES) == len(VALUE_SETS):
        _write_figures(tmp_path)


def _official(tmp: Path) -> dict[str, Any]:
    chart = os.environ.get("OFFICIAL_LAUNCH_AGENT_CHART")
    if chart and Path(chart, "Chart.yaml").is_file():
        objs = helm.template(chart, values_files=(Path(chart, "ci", "basic-values.yaml"),), release="lint",
                             namespace="wandb")
        return {"raw": len(kube_score(objs, tmp)), "source": "measured", "chart": chart}
    return {**json.loads(RECORDED_OFFICIAL.read_text())["kube-score"], "source": "recorded"}


def _write_figures(tmp: Path) -> None:
    write_figures("lint", {
        "linter": "kube-score " + subprocess.run([str(tools.binary("kube-score")), "version"], capture_output=True,
                                                text=True, check=False).stdout.split(",")[0].split()[-1],
        "ours": {"basic_raw": FIGURES["basic-values"]["raw"],
                 "unexplained": sum(f["unexplained"] for f in FIGURES.values()),
                 "raw_by_value_set": {k: v["raw"] for k, v in FIGURES.items()}},
        "official": _official(tmp),
        "accepted_checks": sorted(ACCEPTED),
    })


def test_the_linter_finds_a_privileged_pod(tmp_path: Path) -> None:
    """The check can fail: a privileged container is a finding no reason above covers."""
    values = {"agent": {"containerSecurityContext": {"privileged": True, "allowPrivilegeEscalation": True,
                                                     "readOnlyRootFilesystem": False}}}
    objs = helm.template(CHART, values=values, values_files=(CHART / "ci" / "basic-values.yaml",), release="lint",
                         namespace="wandb")
    checks = {f[1] for f in kube_score(objs, tmp_path)}
    assert "container-security-context-privileged" in checks or \
        "container-security-context-readonlyrootfilesystem" in checks, checks


def test_kube_score_is_pinned_like_the_other_tools() -> None:
    tool = next(t for t in tools.LINT_TOOLS if t.name == "kube-score")
    for name in ("go.mod", "go.sum", "tools.go"):
        assert (tool.module_dir / name).is_file()
    assert tools.required_version(tool.module_dir, "github.com/zegl/kube-score") == "v1.20.0"
