"""Checking a parsed file against one of the JSON Schemas in `schemas/`, with positions."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

import schemas
from generator.problems import Problem
from generator.yamlfile import Document

# Keys users often write that the official agent rejects, with what to write instead.
KEY_HINTS = {
    "queue": "write `queues: [<name>]`; the official agent rejects a singular `queue`",
    "project": "an agent config has no project; each run chooses its own",
    "agentConfig": "the chart key is `launchConfig`",
}

# Values under these keys are never echoed in a message.
SECRET_KEYS = frozenset({"apiKey", "gitCreds", "azureStorageAccessKey", "additionalSecretEnvVars", "password",
                         "token", "secret"})

_TYPE_NAMES = {
    dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
    float: "a number", type(None): "null",
}


def type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


class _Redacted:
    def __repr__(self) -> str:
        return "<secret value hidden>"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _leaf_errors(error: Any) -> Iterator[Any]:
    """The errors worth showing: if/then branches are unwrapped; anyOf stays one error."""
    if error.validator in ("allOf", "$ref", "then", "else") and error.context:
        for sub in error.context:
            yield from _leaf_errors(sub)
    else:
        yield error


def _allowed_keys(schema: dict[str, Any]) -> list[str]:
    return sorted(schema.get("properties", {}))


def _messages(doc: Document, error: Any, prefix: tuple[Any, ...]) -> list[Problem]:
    path = (*prefix, *error.absolute_path)
    value = error.instance
    if any(str(part) in SECRET_KEYS for part in path):
        value = _Redacted()
    schema = error.schema if isinstance(error.schema, dict) else {}
    desc = schema.get("description", "")
    kind = error.validator
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        value = error.instance
        known = _allowed_keys(schema)
        out = []
        for key in value:
            if key in known:
                continue
            hint = KEY_HINTS.get(str(key))
            if hint is None:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else f"allowed keys: {', '.join(known)}"
            out.append(doc.problem((*path, key), f"unknown key; {hint}", key=True))
        return out
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [doc.problem(path, f"missing required key {missing!r}")]
    if kind == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return [doc.problem(path, f"expected {want}, got {type_name(error.instance)} {_short(value)}")]
    if kind == "enum":
        allowed = ", ".join("null" if v is None else str(v) for v in error.validator_value)
        return [doc.problem(path, f"{_short(value)} is not allowed; one of: {allowed}")]
    if kind == "const":
        return [doc.problem(path, f"{_short(value)} is not allowed; must be {error.validator_value!r}")]
    if kind == "anyOf":
        parent_desc = desc or "see the schema"
        return [doc.problem(path, f"{_short(value)} is not allowed: {parent_desc}")]
    if kind == "pattern":
        return [doc.problem(path, f"{_short(value)} is not valid" + (f": {desc}" if desc else ""))]
    if kind == "minItems":
        return [doc.problem(path, f"needs at least {error.validator_value} entr"
                                  f"{'y' if error.validator_value == 1 else 'ies'}")]
    if kind == "minimum":
        return [doc.problem(path, f"{_short(value)} is less than {error.validator_value}")]
    return [doc.problem(path, error.message)]


def check(doc: Document, schema_name: str, *, data: Any = None, prefix: tuple[Any, ...] = ()) -> list[Problem]:
    """Every schema problem of `doc` (or of `data`, a part of it found at `prefix`), sorted by line."""
    validator = schemas.validator(schema_name)
    instance = doc.data if data is None else data
    out: list[Problem] = []
    for error in validator.iter_errors(instance):
        for leaf in _leaf_errors(error):
            out.extend(_messages(doc, leaf, prefix))
    unique = {(p.line, p.col, p.key, p.message): p for p in out}
    return sorted(unique.values(), key=lambda p: (p.line or 0, p.col or 0, p.key))
