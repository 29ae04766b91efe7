"""Every GraphQL document and variables object we send, checked against Plain's real schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    build_schema,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values
from graphql.language import OperationDefinitionNode

from backfill import plain
from backfill.mapper import compile_mapper, event_id, map_row
from backfill.mapping import load_mapping
from backfill.models import Event
from backfill.readers.csv import read_rows
from tests.conftest import MAPPING, ROOT, SAMPLE, SAMPLE_ROWS

FULL_SCHEMA = ROOT.parent / "shared" / "plain" / "schema.graphql"


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    if not FULL_SCHEMA.exists():
        message = f"Plain's full schema is not available at {FULL_SCHEMA}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must have ../shared)")
        pytest.skip(message)
    return build_schema(Path(FULL_SCHEMA).read_text(encoding="utf-8"))


def operation(document: str) -> OperationDefinitionNode:
    node = parse(document).definitions[0]
    assert isinstance(node, OperationDefinitionNode)
    return node


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(plain.CREATE_CUSTOMER_EVENT, id="createCustomerEvent"),
        pytest.param(plain.PREFLIGHT, id="preflight"),
    ],
)
def test_documents_validate(schema, document):
    assert validate(schema, parse(document)) == []


def deprecated_or_ambiguous(value: Any, type_: Any, path: str) -> list[str]:
    """Deprecated input fields used, and one-of inputs with other than exactly one field."""
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    problems = []
    if isinstance(type_, GraphQLList):
        for i, item in enumerate(value):
            problems += deprecated_or_ambiguous(item, type_.of_type, f"{path}[{i}]")
    elif isinstance(type_, GraphQLInputObjectType):
        for name, item in value.items():
            field = type_.fields[name]
            if field.deprecation_reason:
                problems.append(f"{path}.{name} is deprecated")
            problems += deprecated_or_ambiguous(item, field.type, f"{path}.{name}")
        if type_.name in ("EventComponentInput", "CustomerIdentifierInput") and len(value) != 1:
            problems.append(f"{path} sets {len(value)} fields of {type_.name}")
    return problems


def test_the_variables_of_every_sample_row_validate(schema):
    mapper = compile_mapper(load_mapping(MAPPING))
    definitions = operation(plain.CREATE_CUSTOMER_EVENT).variable_definitions
    checked = 0
    for row in read_rows(SAMPLE):
        ident = event_id(mapper, row)
        assert isinstance(ident, str)
        event = map_row(mapper, row, ident)
        assert isinstance(event, Event), event
        body = plain.event_body(event)
        coerced = get_variable_values(schema, definitions, body["variables"])
        assert not isinstance(coerced, list), (row.position, coerced)  # a list is errors
        input_type = schema.mutation_type.fields["createCustomerEvent"].args["input"].type
        assert deprecated_or_ambiguous(body["variables"]["input"], input_type, "input") == []
        checked += 1
    assert checked == SAMPLE_ROWS


def test_the_package_schema_subset_accepts_what_the_full_schema_accepts(schema):
    from importlib.resources import files

    subset = build_schema(
        (files("backfill") / "schema" / "plain_subset.graphql").read_text("utf-8")
    )
    for document in (plain.CREATE_CUSTOMER_EVENT, plain.PREFLIGHT):
        assert validate(subset, parse(document)) == validate(schema, parse(document)) == []
