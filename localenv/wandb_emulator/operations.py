"""What a GraphQL request asks for: its operation name, variables, selected field paths and the
arguments given to each field.

The W&B clients often send an empty ``operationName``; the name is then taken from the
query text. `describe` turns a parsed document into the record kept in the request log and
in tests/fixtures/official-agent-operations.json. An argument is recorded as
``<field path>(<argument>): <value>``; an input object's fields each get their own line
(``popFromRunQueue(input.queueName): $queueName``), so a subset of an input object can be
compared with the whole.
"""

from __future__ import annotations

import re
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    print_ast,
)

_OPERATION_NAME = re.compile(r"^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)", re.MULTILINE)


def operation_name_from_text(query: str, fallback: str | None = None) -> str | None:
    """The name of the first named operation in the query text, else ``fallback``."""
    match = _OPERATION_NAME.search(query)
    if match:
        return match.group(1)
    return fallback or None


def _argument_lines(path: str, name: str, value: ValueNode, out: set[str]) -> None:
    if isinstance(value, ObjectValueNode):
        for item in value.fields:
            _argument_lines(path, f"{name}.{item.name.value}", item.value, out)
        if not value.fields:
            out.add(f"{path}({name}): {{}}")
        return
    out.add(f"{path}({name}): {print_ast(value)}")


def _field_paths(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    prefix: str,
    out: set[str],
    arguments: set[str],
) -> None:
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            path = f"{prefix}{selection.name.value}"
            out.add(path)
            for arg in selection.arguments or ():
                _argument_lines(path, arg.name.value, arg.value, arguments)
            _field_paths(selection.selection_set, fragments, path + ".", out, arguments)
        elif isinstance(selection, InlineFragmentNode):
            _field_paths(selection.selection_set, fragments, prefix, out, arguments)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                _field_paths(fragment.selection_set, fragments, prefix, out, arguments)


def select_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        for op in operations:
            if op.name is not None and op.name.value == name:
                return op
    return operations[0] if len(operations) == 1 or (operations and not name) else None


def describe(document: DocumentNode, name: str | None) -> dict[str, Any]:
    """``{"name", "type", "variables": {name: type}, "fields": [dotted paths], "arguments": [lines]}``
    of one operation."""
    op = select_operation(document, name)
    if op is None:
        return {"name": name or "", "type": "unknown", "variables": {}, "fields": [], "arguments": []}
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    paths: set[str] = set()
    arguments: set[str] = set()
    _field_paths(op.selection_set, fragments, "", paths, arguments)
    variables = {v.variable.name.value: print_ast(v.type) for v in op.variable_definitions or ()}
    return {
        "name": op.name.value if op.name is not None else (name or ""),
        "type": op.operation.value,
        "variables": dict(sorted(variables.items())),
        "fields": sorted(paths),
        "arguments": sorted(arguments),
    }


def client_kind(user_agent: str) -> str:
    """The sending component, from the User-Agent with its version removed."""
    words = [w for w in user_agent.split() if not re.fullmatch(r"v?\d[\w.+-]*", w)]
    return " ".join(words) or "unknown"
