"""The `schemas` package: loading, validators, and a description on every property."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import schemas

OURS = ("launch-config", "queue-config")


@pytest.mark.parametrize("name", schemas.NAMES)
def test_every_schema_loads_and_is_draft_2020_12(name: str) -> None:
    schema = schemas.load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert isinstance(schemas.validator(name), Draft202012Validator)


def test_load_returns_a_private_copy() -> None:
    schemas.load("launch-config")["properties"].clear()
    assert "queues" in schemas.load("launch-config")["properties"]


def test_unknown_schema_name() -> None:
    with pytest.raises(KeyError, match="unknown schema 'nope'"):
        schemas.load("nope")


def _properties(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, sub in (node.get("properties") or {}).items():
            yield f"{path}.{key}", sub
        for key, sub in node.items():
            if key in ("properties", "$defs"):
                for name, child in sub.items():
                    yield from _properties(child, f"{path}.{name}")
            elif isinstance(sub, dict | list):
                yield from _properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _properties(item, f"{path}[{i}]")


@pytest.mark.parametrize("name", OURS)
def test_every_property_has_a_description(name: str) -> None:
    missing = [path for path, sub in _properties(schemas.load(name))
               if isinstance(sub, dict) and "$ref" not in sub and not sub.get("description")]
    assert missing == []
