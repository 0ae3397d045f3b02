"""Concrete bad inputs: each is a refused item with one clear line, or built with its text kept inert."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.manifest import ManifestError, ManifestSettings, build_workload, pod_templates
from generator.cli import main as generator_main

S = ManifestSettings(agent_namespace="wandb", api_key_secret="wandb-api-key-r")


def spec(**extra: Any) -> dict[str, Any]:
    return {"entity": "e", "project": "p", "run_id": "r1", "docker": {"docker_image": "img:1"},
            "resource_args": {"kubernetes": {"spec": {"template": {"spec": {"containers": [{"name": "main"}]}}}}},
            **extra}


def test_a_binary_yaml_key_in_a_queue_config_is_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text("spec:\n  template:\n    !!binary aGVsbG8=: 1\n    spec:\n      containers: [{image: x}]\n")
    out, err = io.StringIO(), io.StringIO()
    code = generator_main(["queue", "-q", str(path)], environ={}, stdout=out, stderr=err)
    assert code in (0, 2) and "Traceback" not in err.getvalue()


def test_the_agents_environment_is_never_a_macro(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    run = spec(name="${WANDB_API_KEY}")
    run["resource_args"]["kubernetes"]["metadata"] = {"labels": {"who": "${HOME}"},
                                                      "annotations": {"x": "${WANDB_API_KEY}"}}
    wl = build_workload(run, item_id="i", queue="q", settings=S)[-1]
    assert "k" * 40 not in json.dumps(wl)
    assert wl["metadata"]["annotations"]["x"] == "${WANDB_API_KEY}"


@pytest.mark.parametrize("text", ["x\nkind: Secret\nmetadata: {name: y}", "{\"a\": 1}", "--- !!python/object",
                                  "\u202emalicious", "名前-😀", "'; DROP TABLE runs; --"])
def test_injected_text_stays_a_string(text: str) -> None:
    wl = build_workload(spec(name=text, author=text), item_id=text, queue=text, settings=S)[-1]
    assert wl["kind"] == "Job" and wl["metadata"]["annotations"]["wandb.ai/run-name"] == text
    dumped = yaml.safe_load(yaml.safe_dump(wl))
    assert dumped == wl  # round-trips: nothing in the text became structure
    env = {e["name"]: e.get("value") for e in wl["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WANDB_NAME"] == text


def test_a_huge_run_config_is_chunked_not_refused() -> None:
    run = spec(overrides={"run_config": {"blob": "x" * 200_000}})
    wl = build_workload(run, item_id="i", queue="q", settings=S)[-1]
    names = [e["name"] for e in wl["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert sum(n.startswith("WANDB_CONFIG_") for n in names) >= 7


@pytest.mark.parametrize(("extra", "rule"), [
    ({"run_id": {"a": 1}}, "run-spec"),
    ({"run_id": None}, "run-spec"),
    ({"entity": ["x"]}, "run-spec"),
    ({"overrides": "nope"}, "overrides"),
    ({"overrides": {"args": "python train.py"}}, "overrides"),
    ({"resource_args": "nope"}, "resource-args"),
    ({"resource_args": {"kubernetes": {"spec": []}}}, "shape"),
    ({"resource_args": {"kubernetes": {"spec": {"template": {"spec": {"containers": {"a": 1}}}}}}}, "containers"),
    ({"resource_args": {"kubernetes": {"spec": {"template": {"spec": {"containers": [
        {"env": [{"name": ["A"], "value": "1"}]}]}}}}}}, "shape"),
    ({"resource_args": {"kubernetes": {"metadata": {"labels": {"a b": "c"}}}}}, "metadata"),
    ({"resource_args": {"kubernetes": {"metadata": {"annotations": {"k": "v" * 300_000}}}}}, "metadata"),
    ({"additional_services": {"config": {}}}, "additional-services"),
    ({"additional_services": ["x"]}, "additional-services"),
])
def test_wrong_or_missing_fields_are_one_clear_refusal(extra: dict[str, Any], rule: str) -> None:
    with pytest.raises(ManifestError) as err:
        build_workload(spec(**extra), item_id="i", queue="q", settings=S)
    assert err.value.rule == rule and "\n" not in str(err.value)


def test_user_names_are_made_valid_or_refused() -> None:
    run = spec()
    run["resource_args"]["kubernetes"]["metadata"] = {"name": "My_Run.${run_id}!" + "x" * 80}
    name = build_workload(run, item_id="i", queue="q", settings=S)[-1]["metadata"]["name"]
    assert len(name) <= 63 and name == name.lower() and name[0].isalnum()
    for tmpl in pod_templates(build_workload(spec(), item_id="i", queue="q", settings=S)[-1]):
        assert tmpl["spec"]["containers"][0]["name"] == "main"
