"""The release workflow (.github/workflows/release.yaml), checked without GitHub.

It cannot run here (no registry, no runner), so it is checked by construction: it is valid
against the GitHub workflow schema (SchemaStore's, vendored by check-jsonschema), every action
is pinned to a commit, it runs on version tags only with the least permissions, builds both
architectures with provenance and an SBOM, attests the image and the chart, and its two shell
steps that touch the chart are run here on a copy of the chart.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yaml"
CHART = REPO / "charts" / "launch-agent"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")


def _load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    if True in data:  # YAML 1.1 reads the key `on` as true
        data["on"] = data.pop(True)
    return data


WF = _load()


def _steps() -> list[dict[str, Any]]:
    return [step for job in WF["jobs"].values() for step in job["steps"]]


def _step(name: str) -> dict[str, Any]:
    return next(s for s in _steps() if s.get("name") == name)


def test_valid_against_the_github_workflow_schema() -> None:
    schema = json.loads(resources.files("check_jsonschema").joinpath(
        "builtin_schemas/vendor/github-workflows.json").read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in
              jsonschema.Draft7Validator(schema).iter_errors(WF)]
    assert not errors, errors


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    lines = [line.strip() for line in WORKFLOW.read_text().splitlines() if re.match(r"\s*-?\s*uses:", line)]
    assert len(lines) >= 8
    for line in lines:
        ref, _, comment = line.split("uses:", 1)[1].strip().partition("#")
        assert PINNED.match(ref.strip()), line
        assert re.fullmatch(r" v\d+\.\d+\.\d+", comment), line


def test_runs_on_version_tags_only_with_least_privilege() -> None:
    assert WF["on"] == {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}}
    assert WF["permissions"] == {"contents": "read"}
    for job in WF["jobs"].values():
        assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write",
                                      "attestations": "write"}
        assert job["timeout-minutes"] <= 60
    for step in _steps():
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_no_expression_is_expanded_inside_a_script() -> None:
    for step in _steps():
        if "run" in step:
            assert "${{" not in step["run"], step.get("name")


def test_multi_arch_image_with_provenance_and_sbom() -> None:
    build = _step("Build and push")
    assert build["uses"].startswith("docker/build-push-action@")
    w = build["with"]
    assert w["file"] == "agent/Dockerfile" and (REPO / w["file"]).is_file()
    assert set(w["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert w["push"] is True and w["provenance"] == "mode=max" and w["sbom"] is True
    image = _step("Attest the image")
    assert image["with"]["subject-digest"] == "${{ steps.build.outputs.digest }}"
    assert image["with"]["push-to-registry"] is True


def test_chart_is_pushed_as_an_oci_artifact_and_attested() -> None:
    assert WF["jobs"]["chart"]["needs"] == "image"
    assert 'helm push "$FILE" "oci://ghcr.io/$owner/charts"' in _step("Push the chart")["run"]
    attest = _step("Attest the chart")
    assert attest["uses"].startswith("actions/attest-build-provenance@")
    assert attest["with"]["subject-digest"] == "${{ steps.push.outputs.digest }}"
    assert attest["with"]["push-to-registry"] is True


def _run_step(name: str, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Run one `run:` step with bash in `cwd`; returns what it wrote to $GITHUB_OUTPUT."""
    out = cwd / "github-output"
    out.write_text("")
    proc = subprocess.run(["bash", "-e", "-c", _step(name)["run"]], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(out), **env}, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    shutil.copytree(CHART, tmp_path / "charts" / "launch-agent")
    return tmp_path


def _app_version() -> str:
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


def test_tag_names_the_image_the_chart_defaults_to(checkout: Path) -> None:
    outputs = _run_step("Names from the tag", {"OWNER": "Launch-Agent", "TAG": f"v{_app_version()}"}, checkout)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # the image a release of this repository pushes is the chart's default reference
    assert outputs == {"version": _app_version(), "image": values["agent"]["image"]}
    proc = subprocess.run(["bash", "-e", "-c", _step("Names from the tag")["run"]], cwd=checkout,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(checkout / "o"),
                               "OWNER": "launch-agent", "TAG": "v99.0.0"})
    assert proc.returncode != 0 and "does not match appVersion" in proc.stdout


def test_released_chart_points_at_the_pushed_image_and_prints_no_build_notice(checkout: Path) -> None:
    chart = checkout / "charts" / "launch-agent"
    _run_step("Point the chart at the released image",
              {"IMAGE": "ghcr.io/someone/agent", "VERSION": _app_version()}, checkout)
    assert yaml.safe_load((chart / "values.yaml").read_text())["agent"]["image"] == "ghcr.io/someone/agent"
    annotations = yaml.safe_load((chart / "Chart.yaml").read_text())["annotations"]
    assert annotations["launch-agent.dev/image-published"] == "true"
