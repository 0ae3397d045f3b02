"""How a pushed run spec is combined with its queue's default resource config.

The queue config is stored as ``{"resource_args": {<resource>: {...}}}`` and may hold
handlebars placeholders (``{{name}}``) for template variables. At push time the placeholders
are filled from the pushed values (falling back to each variable's schema default), and the
result is deep-merged with the run's own ``resource_args``: mappings merge key by key, and on
any other conflict the run's value wins. Agent-side macros (``${...}``) are left untouched.
"""

from __future__ import annotations

import copy
import re
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w-]*)\s*\}\}")


class QueueConfigError(ValueError):
    """A push that the queue's config or template variables refuse."""


def deep_merge(base: Any, override: Any) -> Any:
    """Merge ``override`` onto ``base``: dicts recursively, anything else replaced by override."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = {
            key: deep_merge(value, override[key]) if key in override else copy.deepcopy(value)
            for key, value in base.items()
        }
        for key, value in override.items():
            if key not in base:
                merged[key] = copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def _check_value(name: str, value: Any, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise QueueConfigError(f"template variable {name!r} must be an integer, got {value!r}")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise QueueConfigError(f"template variable {name!r} must be a number, got {value!r}")
    elif kind == "string" and not isinstance(value, str):
        raise QueueConfigError(f"template variable {name!r} must be a string, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise QueueConfigError(f"template variable {name!r} must be one of {schema['enum']!r}, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise QueueConfigError(f"template variable {name!r} must be >= {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            raise QueueConfigError(f"template variable {name!r} must be <= {schema['maximum']}, got {value}")
    return value


def resolve_template_values(schemas: dict[str, dict[str, Any]], given: dict[str, Any] | None) -> dict[str, Any]:
    """Check pushed template values against the queue's variable schemas and add defaults."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(schemas))
    if unknown:
        raise QueueConfigError(f"queue has no template variable(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, schema in schemas.items():
        if name in given:
            values[name] = _check_value(name, given[name], schema)
        elif "default" in schema:
            values[name] = schema["default"]
    return values


def render_placeholders(config: Any, values: dict[str, Any]) -> Any:
    """Replace ``{{name}}`` in every string leaf; a leaf that is only a placeholder keeps the value's type."""
    if isinstance(config, dict):
        return {key: render_placeholders(value, values) for key, value in config.items()}
    if isinstance(config, list):
        return [render_placeholders(value, values) for value in config]
    if not isinstance(config, str):
        return config
    whole = _PLACEHOLDER.fullmatch(config.strip())
    if whole:
        name = whole.group(1)
        if name not in values:
            raise QueueConfigError(f"template variable {name!r} has no value and no default")
        return copy.deepcopy(values[name])

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise QueueConfigError(f"template variable {name!r} has no value and no default")
        return str(values[name])

    return _PLACEHOLDER.sub(substitute, config)


def merge_run_spec(
    run_spec: dict[str, Any],
    resource: str | None,
    queue_config: dict[str, Any] | None,
    template_schemas: dict[str, dict[str, Any]] | None = None,
    template_values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the run spec an agent receives: queue config rendered and merged under the run's args."""
    spec = copy.deepcopy(run_spec)
    values = resolve_template_values(template_schemas or {}, template_values)
    queue_args = render_placeholders((queue_config or {}).get("resource_args") or {}, values)
    run_args = spec.get("resource_args") or {}
    if not isinstance(run_args, dict):
        raise QueueConfigError("runSpec.resource_args must be an object")
    merged = deep_merge(queue_args, run_args)
    if merged:
        spec["resource_args"] = merged
    if resource and not spec.get("resource"):
        spec["resource"] = resource
    return spec
