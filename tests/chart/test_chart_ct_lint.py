"""`ct lint` without the ct binary: chart-testing's lint rules through its own Python tools.

chart-testing lints a chart with yamale (Chart.yaml against its chart schema, strict), yamllint
(Chart.yaml, values.yaml and every ci/*-values.yaml against its lint config) and `helm lint`
with each ci values file (test_chart_generated.test_helm_lint_strict_is_clean). The rules are in
tests/chart/ct/ (chart-testing's chart_schema.yaml and lintconf.yaml).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yamale
from chart_checks import CHART
from yamllint import linter
from yamllint.config import YamlLintConfig

CT = Path(__file__).parent / "ct"
LINTED = [CHART / "Chart.yaml", CHART / "values.yaml", *sorted((CHART / "ci").glob("*-values.yaml"))]


def chart_yaml_problems(path: Path) -> list[str]:
    schema = yamale.make_schema(str(CT / "chart_schema.yaml"))
    try:
        yamale.validate(schema, yamale.make_data(str(path)), strict=True)
    except yamale.YamaleError as exc:
        return [str(r) for r in exc.results]
    return []


def yamllint_errors(path: Path) -> list[str]:
    config = YamlLintConfig(file=str(CT / "lintconf.yaml"))
    return [f"{path.name}:{p.line}:{p.column}: {p.message} ({p.rule})"
            for p in linter.run(path.read_text(), config, str(path)) if p.level == "error"]


def test_chart_yaml_passes_the_chart_schema() -> None:
    assert chart_yaml_problems(CHART / "Chart.yaml") == []


@pytest.mark.parametrize("path", LINTED, ids=[p.name for p in LINTED])
def test_yamllint_clean(path: Path) -> None:
    assert yamllint_errors(path) == []


def test_the_checks_catch_what_ct_lint_catches(tmp_path: Path) -> None:
    bad_chart = tmp_path / "Chart.yaml"
    bad_chart.write_text((CHART / "Chart.yaml").read_text() + "maintainer: someone\n")
    assert chart_yaml_problems(bad_chart)
    bad_values = tmp_path / "values.yaml"
    bad_values.write_text("agent:\n  image: x   \n\n\n\nreplicas: 1")
    errors = yamllint_errors(bad_values)
    assert any("trailing-spaces" in e for e in errors) and any("new-line-at-end-of-file" in e for e in errors)
    assert any("empty-lines" in e for e in errors)
