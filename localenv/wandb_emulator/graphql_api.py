"""The GraphQL endpoint: our SDL, its resolvers, and a cache of parsed and validated queries.

Clients repeat the same few query texts, so each text is parsed and validated once; an
invalid text is remembered with its errors. Every execution runs under the state lock,
so a request sees and leaves a consistent state.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
    execute,
    parse,
    validate,
)
from graphql.utilities import value_from_ast_untyped

from localenv.wandb_emulator.operations import describe, operation_name_from_text
from localenv.wandb_emulator.resolvers import MUTATION_RESOLVERS, QUERY_RESOLVERS, RequestContext

_CACHE_LIMIT = 512
# The base schema, then the files that extend it (each feature in its own file).
SDL_FILES = ("schema.graphql", "artifacts.graphql", "sweeps.graphql")


def _serialize_json_string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _parse_json_string(value: Any) -> Any:
    return value


def load_schema() -> GraphQLSchema:
    """Build the executable schema from schema.graphql and attach the resolvers."""
    here = resources.files("localenv.wandb_emulator")
    sdl = "\n".join(here.joinpath(name).read_text() for name in SDL_FILES)
    schema = build_schema(sdl)
    for type_name, resolvers in (("Query", QUERY_RESOLVERS), ("Mutation", MUTATION_RESOLVERS)):
        obj = schema.type_map[type_name]
        assert isinstance(obj, GraphQLObjectType)
        for field_name, resolver in resolvers.items():
            obj.fields[field_name].resolve = resolver
    json_string = schema.type_map["JSONString"]
    assert isinstance(json_string, GraphQLScalarType)
    json_string.serialize = _serialize_json_string  # type: ignore[method-assign]
    json_string.parse_value = _parse_json_string  # type: ignore[method-assign]
    json_any = schema.type_map["JSON"]
    assert isinstance(json_any, GraphQLScalarType)
    json_any.serialize = _parse_json_string  # type: ignore[method-assign]
    json_any.parse_value = _parse_json_string  # type: ignore[method-assign]
    json_any.parse_literal = lambda node, variables=None: value_from_ast_untyped(node, variables)  # type: ignore[method-assign]
    return schema


@dataclass
class PreparedQuery:
    document: DocumentNode | None
    errors: list[GraphQLError]
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self, name: str | None) -> dict[str, Any]:
        key = name or ""
        found = self.operations.get(key)
        if found is None:
            found = describe(self.document, name) if self.document is not None else {
                "name": key,
                "type": "unknown",
                "variables": {},
                "fields": [],
            }
            self.operations[key] = found
        return found


@dataclass
class GraphQLOutcome:
    operation: str
    summary: dict[str, Any]
    body: dict[str, Any]


class GraphQLEndpoint:
    """Executes GraphQL requests against one `EmulatorState`."""

    def __init__(self) -> None:
        self.schema = load_schema()
        self._cache: dict[str, PreparedQuery] = {}
        self._cache_lock = threading.Lock()

    def prepare(self, query: str) -> PreparedQuery:
        with self._cache_lock:
            prepared = self._cache.get(query)
        if prepared is not None:
            return prepared
        try:
            document = parse(query)
        except GraphQLError as exc:
            prepared = PreparedQuery(None, [exc])
        else:
            prepared = PreparedQuery(document, list(validate(self.schema, document)))
        with self._cache_lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[query] = prepared
        return prepared

    @staticmethod
    def operation_name(body: dict[str, Any]) -> str:
        query = body.get("query")
        given = body.get("operationName") or None
        if not isinstance(query, str):
            return given or ""
        return operation_name_from_text(query, given) or ""

    def run(self, body: dict[str, Any], context: RequestContext) -> GraphQLOutcome:
        query = body.get("query")
        name = self.operation_name(body)
        if not isinstance(query, str) or not query.strip():
            return GraphQLOutcome(name, {"name": name}, {"data": None, "errors": [{"message": "no query given"}]})
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return GraphQLOutcome(name, {"name": name}, {"data": None, "errors": [{"message": "variables must be an object"}]})
        prepared = self.prepare(query)
        summary = prepared.summary(name or None)
        if prepared.errors or prepared.document is None:
            return GraphQLOutcome(name, summary, {"data": None, "errors": [e.formatted for e in prepared.errors]})
        with context.state.lock:
            result = execute(
                self.schema,
                prepared.document,
                context_value=context,
                variable_values=variables,
                operation_name=name or None,
            )
        assert not hasattr(result, "__await__")
        out: dict[str, Any] = {"data": result.data}  # type: ignore[union-attr]
        if result.errors:  # type: ignore[union-attr]
            out["errors"] = [e.formatted for e in result.errors]  # type: ignore[union-attr]
        return GraphQLOutcome(name, summary, out)
