"""The generated files are up to date, the schema is complete, and helm lint --strict is clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chart_checks import CHART, CI_FILES, KUBE_VERSION, OFFICIAL_STYLE, REPO

import schemas
from generator import chart_schema
from localenv import helm

SOURCE = REPO / "schemas" / "values.schema.json"


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def test_chart_schema_and_readme_are_generated_from_the_source() -> None:
    for path, expected in chart_schema.expected_files(REPO).items():
        assert path.read_text() == expected, f"{path.relative_to(REPO)} is stale: run `python -m generator schema`"


def test_stale_readme_is_detected(tmp_path: Path) -> None:
    readme = (CHART / "README.md").read_text()
    stale = readme.replace("| `replicas` |", "| `replicaCount` |")
    assert chart_schema.render_readme(stale, load(CHART / "values.schema.json")) == readme


def test_values_table_lists_every_default_key() -> None:
    table = chart_schema.render_values_table(chart_schema.load_source_schema())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(node: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in node.items():
            if isinstance(v, dict) and v and k not in ("resources", "podSecurityContext", "containerSecurityContext"):
                out += leaves(v, f"{prefix}{k}.")
            else:
                out.append(prefix + k)
        return out

    for key in leaves(values):
        assert f"| `{key}` |" in table, key


def walk_properties(node: dict, path: str = "") -> list[tuple[str, dict]]:
    found = []
    for name, sub in node.get("properties", {}).items():
        found.append((f"{path}.{name}", sub))
        found += walk_properties(sub, f"{path}.{name}")
    for name, sub in node.get("$defs", {}).items():
        found += walk_properties(sub, f"$defs.{name}")
    if isinstance(node.get("items"), dict):
        found += walk_properties(node["items"], f"{path}[]")
    return found


def test_source_schema_is_2020_12_with_descriptions_and_closed_objects() -> None:
    schema = load(SOURCE)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    props = walk_properties(schema)
    assert len(props) > 60
    for path, sub in props:
        assert sub.get("description"), f"{path} has no description"
        if sub.get("type") == "object" and "properties" in sub:
            assert sub.get("additionalProperties") is False, f"{path} is open"


def test_schema_defaults_match_values_yaml() -> None:
    schema = load(SOURCE)
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def check(node: dict, vals: dict, path: str) -> None:
        for name, sub in node.get("properties", {}).items():
            if name == "global":
                continue
            assert name in vals, f"{path}{name} missing from values.yaml"
            if "default" in sub:
                assert sub["default"] == vals[name], f"{path}{name}"
            if sub.get("type") == "object" and "properties" in sub:
                check(sub, vals[name], f"{path}{name}.")

    check(schema, values, "")
    assert set(values) <= set(schema["properties"])


@pytest.mark.parametrize("values_file", [*CI_FILES, OFFICIAL_STYLE], ids=lambda p: p.stem)
def test_values_files_validate_against_the_source_schema(values_file: Path) -> None:
    validator = jsonschema.Draft202012Validator(schemas.load("values"))
    data = yaml.safe_load(values_file.read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
    assert not errors, errors


@pytest.mark.parametrize("values_file", [*CI_FILES, OFFICIAL_STYLE], ids=lambda p: p.stem)
def test_helm_lint_strict_is_clean(values_file: Path) -> None:
    out = helm.run("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, "--values", str(values_file))
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_helm_lint_strict_fails_on_a_typo(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("agent:\n  imagePullpolicy: Always\n")
    with pytest.raises(helm.HelmError) as info:
        helm.run("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION,
                 "--values", str(CHART / "ci" / "basic-values.yaml"), "--values", str(bad))
    assert "imagePullpolicy" in info.value.stdout + info.value.stderr
