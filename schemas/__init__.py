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


def load(name: str) -> dict[str, Any]:
    """The schema `name` as a fresh dict (callers may modify it)."""
    _check(name)
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validator(name: str) -> Any:
    """A Draft 2020-12 validator for schema `name`, with format checking on."""
    from jsonschema import Draft202012Validator

    schema = load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
