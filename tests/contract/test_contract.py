"""Every GraphQL document and variables object we send, checked against Plain's real schema."""

from __future__ import annotations

import pytest
from graphql import (
    build_schema,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values
from graphql.language import OperationDefinitionNode

from backfill import plain
from backfill.mapper import compile_mapper, event_id, map_row
from backfill.mapping import load_mapping
from backfill.models import Event, EventKind
from backfill.readers.csv import read_rows
from tests.conftest import MAPPING, SAMPLE, SAMPLE_ROWS
from tests.contract.conftest import deprecated_or_ambiguous


def operation(document: str) -> OperationDefinitionNode:
    node = parse(document).definitions[0]
    assert isinstance(node, OperationDefinitionNode)
    return node


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(plain.CREATE_CUSTOMER_EVENT, id="createCustomerEvent"),
        pytest.param(plain.CREATE_THREAD_EVENT, id="createThreadEvent"),
        pytest.param(plain.UPSERT_CUSTOMER, id="upsertCustomer"),
        pytest.param(plain.PREFLIGHT, id="preflight"),
    ],
)
def test_documents_validate(schema, document):
    assert validate(schema, parse(document)) == []


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
    documents = (plain.CREATE_CUSTOMER_EVENT, plain.CREATE_THREAD_EVENT, plain.UPSERT_CUSTOMER)
    for document in (*documents, plain.PREFLIGHT):
        assert validate(subset, parse(document)) == validate(schema, parse(document)) == []


def test_multi_event_documents_and_their_variables_validate(schema):
    """`--events-per-request`: K aliased mutations, customer and thread events mixed."""
    mapper = compile_mapper(load_mapping(MAPPING))
    events = []
    for row in read_rows(SAMPLE):
        event = map_row(mapper, row, str(event_id(mapper, row)))
        assert isinstance(event, Event)
        events.append(event)
        if len(events) == 50:
            break
    thread = Event(
        "ns_thread",
        EventKind.THREAD,
        {"threadId": "th_01", "title": "t", "components": [], "externalId": "ns_thread"},
        "h",
        "in.csv",
        "2",
        "2024-01-01T00:00:00.000Z",
    )
    for batch in (events[:2], events[:25], events, [events[0], thread, events[1]]):
        body = plain.batch_body(batch)
        document = parse(body["query"])
        assert validate(schema, document) == []
        definitions = operation(body["query"]).variable_definitions
        coerced = get_variable_values(schema, definitions, body["variables"])
        assert not isinstance(coerced, list), coerced
        assert body["operationName"] == operation(body["query"]).name.value
