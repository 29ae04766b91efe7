"""GraphQL documents: the schema the fake Plain serves, requests parsed and validated.

Documents are parsed and validated against the schema in ``backfill/schema`` with
graphql-core; one that fails is a ``BadRequest`` carrying Apollo's error code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any, Final

from graphql import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
    VariableNode,
    build_schema,
    parse,
    validate,
)

_CACHE_SIZE: Final = 512


@cache
def load_schema() -> GraphQLSchema:
    """The schema the fake serves, read from the package data once."""
    sdl = (files("backfill") / "schema" / "plain_subset.graphql").read_text(encoding="utf-8")
    return build_schema(sdl)


class BadRequest(Exception):
    """A request Plain answers with a 400: its message and Apollo-style error code."""

    def __init__(self, message: str, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.code = code


def parse_request(body: bytes) -> tuple[str, dict[str, Any] | None, str | None]:
    """The query, variables and operation name of a GraphQL POST body."""
    try:
        request = json.loads(body)
    except ValueError:
        raise BadRequest("POST body sent invalid JSON.") from None
    if not isinstance(request, dict):
        raise BadRequest("POST body must be a JSON object.")
    query = request.get("query")
    variables = request.get("variables")
    operation_name = request.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("GraphQL operations must contain a non-empty `query`.")
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest("`variables` in a POST body must be an object if provided.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise BadRequest("`operationName` in a POST body must be a string if provided.")
    return query, variables, operation_name


class Documents:
    """Parsed and validated documents by query text, the 512 most recently parsed.

    Callers hold ``FakePlain``'s lock.
    """

    def __init__(self, schema: GraphQLSchema) -> None:
        self._schema = schema
        self._documents: dict[str, DocumentNode | BadRequest] = {}

    def get(self, query: str) -> DocumentNode:
        """The document of ``query``; raises ``BadRequest`` if it does not parse or validate."""
        cached = self._documents.get(query)
        if cached is None:
            cached = _parse_and_validate(self._schema, query)
            if len(self._documents) >= _CACHE_SIZE:
                del self._documents[next(iter(self._documents))]
            self._documents[query] = cached
        if isinstance(cached, BadRequest):
            raise cached
        return cached


def _parse_and_validate(schema: GraphQLSchema, query: str) -> DocumentNode | BadRequest:
    try:
        document = parse(query)
    except GraphQLError as error:
        return BadRequest(error.message, "GRAPHQL_PARSE_FAILED")
    errors = validate(schema, document)
    if errors:
        return BadRequest("; ".join(error.message for error in errors), "GRAPHQL_VALIDATION_FAILED")
    return document


def root_field_count(
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None,
) -> int:
    """Count the response keys an operation would execute at its root, ``__typename`` aside.

    Fragments are expanded and ``@skip``/``@include`` are honoured; a repeated response
    key is one field, as execution merges it.
    """
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    values = {
        definition.variable.name.value: definition.default_value.value
        for definition in operation.variable_definitions or ()
        if isinstance(definition.default_value, BooleanValueNode)
    }
    values.update(variables or {})
    keys: set[str] = set()

    def collect(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if not _included(selection, values):
                continue
            if isinstance(selection, FieldNode):
                if selection.name.value != "__typename":
                    keys.add((selection.alias or selection.name).value)
            elif isinstance(selection, InlineFragmentNode):
                collect(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    collect(fragment.selection_set)

    collect(operation.selection_set)
    return len(keys)


def _included(selection: SelectionNode, variables: Mapping[str, Any]) -> bool:
    for directive in selection.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        condition = next(
            (arg.value for arg in directive.arguments or () if arg.name.value == "if"), None
        )
        value: Any
        if isinstance(condition, BooleanValueNode):
            value = condition.value
        elif isinstance(condition, VariableNode):
            value = variables.get(condition.name.value)
        else:
            continue
        if (name == "skip" and value is True) or (name == "include" and value is False):
            return False
    return True
