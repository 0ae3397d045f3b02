"""JSON Schemas (draft 2020-12) of the agent config, the queue config and the chart values.

`load(name)` returns a schema as a dict; `validator(name)` a ready jsonschema validator.
Names: `launch-config`, `queue-config`, `values`. The files ship inside the package, so the
agent and the generator read them with importlib.resources wherever they are installed.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

NAMES = ("launch-config", "queue-config", "values")


def _check(name: str) -> None:
    if name not in NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(NAMES)}")


def _read(filename: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files(__name__).joinpath(filename).read_text(encoding="utf-8"))
    return data


def load(name: str) -> dict[str, Any]:
    """The schema `name` as a fresh dict (callers may modify it). The values schema comes with the
    Kubernetes definitions it refers to (kubernetes.defs.json, generated from the Kubernetes OpenAPI)."""
    _check(name)
    schema = _read(f"{name}.schema.json")
    if name == "values":
        schema["$defs"] = {**schema.get("$defs", {}), **_read("kubernetes.defs.json")["$defs"]}
    return schema


def load_source(name: str) -> dict[str, Any]:
    """The schema file `name` as written, without the Kubernetes definitions."""
    _check(name)
    return _read(f"{name}.schema.json")


def validator(name: str) -> Any:
    """A Draft 2020-12 validator for schema `name`, with format checking on."""
    from jsonschema import Draft202012Validator

    schema = load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
