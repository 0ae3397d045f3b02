"""The W&B emulator's merge of a queue's default resource config with a pushed run spec."""

from __future__ import annotations

import pytest

from localenv.wandb_emulator.queue_config import (
    QueueConfigError,
    deep_merge,
    merge_run_spec,
    render_placeholders,
    resolve_template_values,
)

QUEUE_CONFIG = {
    "resource_args": {
        "kubernetes": {
            "metadata": {"namespace": "jobs", "labels": {"team": "ml", "tier": "batch"}},
            "spec": {
                "backoffLimit": 1,
                "template": {"spec": {"containers": [{"resources": {"limits": {"cpu": "1"}}}]}},
            },
        }
    }
}


def test_deep_merge_run_values_win_and_dicts_merge() -> None:
    merged = deep_merge({"a": {"x": 1, "y": 2}, "b": [1, 2], "c": 1}, {"a": {"y": 3, "z": 4}, "b": [9]})
    assert merged == {"a": {"x": 1, "y": 3, "z": 4}, "b": [9], "c": 1}


def test_deep_merge_does_not_alias_inputs() -> None:
    base = {"a": {"x": [1]}}
    override = {"b": {"y": [2]}}
    merged = deep_merge(base, override)
    merged["a"]["x"].append(5)
    merged["b"]["y"].append(5)
    assert base == {"a": {"x": [1]}} and override == {"b": {"y": [2]}}


def test_run_resource_args_override_queue_config() -> None:
    spec = {
        "entity": "acme",
        "project": "demo",
        "resource_args": {"kubernetes": {"metadata": {"labels": {"team": "research"}}, "spec": {"backoffLimit": 0}}},
    }
    merged = merge_run_spec(spec, "kubernetes", QUEUE_CONFIG)
    k8s = merged["resource_args"]["kubernetes"]
    assert k8s["metadata"] == {"namespace": "jobs", "labels": {"team": "research", "tier": "batch"}}
    assert k8s["spec"]["backoffLimit"] == 0
    assert k8s["spec"]["template"]["spec"]["containers"] == [{"resources": {"limits": {"cpu": "1"}}}]
    assert merged["resource"] == "kubernetes"
    assert spec["resource_args"]["kubernetes"]["spec"] == {"backoffLimit": 0}, "input must not change"


def test_lists_are_replaced_not_merged() -> None:
    spec = {"resource_args": {"kubernetes": {"spec": {"template": {"spec": {"containers": [{"name": "main"}]}}}}}}
    merged = merge_run_spec(spec, "kubernetes", QUEUE_CONFIG)
    assert merged["resource_args"]["kubernetes"]["spec"]["template"]["spec"]["containers"] == [{"name": "main"}]


def test_resource_kept_when_run_sets_it() -> None:
    merged = merge_run_spec({"resource": "local-container"}, "kubernetes", None)
    assert merged["resource"] == "local-container"
    assert "resource_args" not in merged


def test_macros_are_left_for_the_agent() -> None:
    config = {"resource_args": {"kubernetes": {"metadata": {"name": "job-${run_id}"}, "image": "${image_uri}"}}}
    merged = merge_run_spec({}, "kubernetes", config)
    assert merged["resource_args"]["kubernetes"] == {"metadata": {"name": "job-${run_id}"}, "image": "${image_uri}"}


def test_template_variables_typed_and_interpolated() -> None:
    config = {
        "resource_args": {
            "kubernetes": {
                "spec": {"parallelism": "{{workers}}"},
                "metadata": {"labels": {"size": "gpu-{{ gpus }}x"}},
            }
        }
    }
    schemas = {"workers": {"type": "integer", "minimum": 1, "maximum": 8}, "gpus": {"type": "integer", "default": 1}}
    merged = merge_run_spec({}, "kubernetes", config, schemas, {"workers": 4})
    k8s = merged["resource_args"]["kubernetes"]
    assert k8s["spec"]["parallelism"] == 4
    assert k8s["metadata"]["labels"]["size"] == "gpu-1x"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"workers": 0}, "must be >= 1"),
        ({"workers": 9}, "must be <= 8"),
        ({"workers": "4"}, "must be an integer"),
        ({"workers": 2, "other": 1}, "no template variable(s) other"),
    ],
)
def test_template_values_checked_against_schema(given: dict, message: str) -> None:
    schemas = {"workers": {"type": "integer", "minimum": 1, "maximum": 8}}
    with pytest.raises(QueueConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_template_values(schemas, given)


def test_missing_template_value_without_default_is_refused() -> None:
    with pytest.raises(QueueConfigError, match="has no value"):
        render_placeholders({"a": "{{x}}"}, {})


def test_enum_and_number_schemas() -> None:
    schemas = {"tier": {"type": "string", "enum": ["a", "b"]}, "mem": {"type": "number"}}
    assert resolve_template_values(schemas, {"tier": "a", "mem": 1.5}) == {"tier": "a", "mem": 1.5}
    with pytest.raises(QueueConfigError, match="must be one of"):
        resolve_template_values(schemas, {"tier": "c"})
    with pytest.raises(QueueConfigError, match="must be a number"):
        resolve_template_values(schemas, {"mem": True})


def test_non_object_resource_args_refused() -> None:
    with pytest.raises(QueueConfigError, match="resource_args must be an object"):
        merge_run_spec({"resource_args": ["x"]}, "kubernetes", QUEUE_CONFIG)
