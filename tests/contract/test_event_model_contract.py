"""Every component and both event kinds, checked against Plain's full schema.

The property test: for arbitrary row values, the mapper either produces variables
that Plain's schema and documented limits accept, or says why the row is invalid.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from graphql import parse
from graphql.execution.values import get_variable_values
from graphql.language import OperationDefinitionNode
from hypothesis import given
from hypothesis import strategies as st

from backfill import plain
from backfill.fakeplain import FakePlain
from backfill.mapper import compile_mapper, event_id, map_row
from backfill.mapping import COMPONENTS, parse_mapping
from backfill.models import Event, EventKind, Invalid, SourceRow
from tests.contract.conftest import deprecated_or_ambiguous

COLUMNS = ["id", "at", "email", "name", "thread", "title", "text", "label", "url", "user"]

EVERY_COMPONENT = [
    {"type": "text", "text": "{{ text }}", "size": "L", "color": "SUCCESS"},
    {"type": "plain_text", "text": "{{ text }}", "size": "S", "color": "MUTED"},
    {"type": "badge", "label": "{{ label }}", "color": "RED", "when": "label"},
    {"type": "link_button", "url": "{{ url }}", "label": "{{ label }}"},
    {"type": "workflow_button", "label": "{{ label }}", "workflow_key": "refund"},
    {
        "type": "copy_button",
        "value": "{{ text }}",
        "tooltip": "{{ label }}",
        "too_long": "truncate",
    },
    {"type": "divider", "spacing": "XL"},
    {"type": "spacer", "size": "XS"},
    {"type": "date_time", "value": "{{ at }}"},
    {"type": "user", "email": "{{ user }}"},
    {
        "type": "row",
        "main": [{"type": "plain_text", "text": "{{ title }}"}],
        "aside": [{"type": "badge", "label": "{{ label }}", "when": "label"}],
    },
]


def mapper_with(components: list[dict[str, Any]]):
    return compile_mapper(
        parse_mapping(
            {
                "title": "{{ title }}",
                "customer": {"email": "email", "full_name": "name"},
                "thread": {"id": "thread"},
                "timestamp": {"column": "at"},
                "external_id": {"namespace": "contract", "key": ["id"]},
                "components": components,
            },
            file="m.toml",
        )
    )


GOOD = {
    "id": "1",
    "at": "2024-05-01T10:00:00+02:00",
    "email": "ada@acme.example",
    "name": "Ada",
    "thread": "",
    "title": "Order placed",
    "text": "**42** items",
    "label": "paid",
    "url": "https://admin.acme.example/o/42",
    "user": "agent@acme.example",
}


def variables_errors(schema, event: Event) -> list[Any]:
    document, operation, _ = plain.MUTATIONS[event.kind]
    node = parse(document).definitions[0]
    assert isinstance(node, OperationDefinitionNode)
    coerced = get_variable_values(schema, node.variable_definitions, {"input": event.input})
    problems: list[Any] = list(coerced) if isinstance(coerced, list) else []
    input_type = schema.mutation_type.fields[operation].args["input"].type
    problems += deprecated_or_ambiguous(event.input, input_type, "input")
    return problems + limit_errors(event.input["components"])


def limit_errors(components: list[dict[str, Any]]) -> list[str]:
    """Plain's documented limits (API_FACTS.md), checked independently of the mapper."""
    errors = []
    for component in components:
        ((kind, fields),) = component.items()
        if kind == "componentRow":
            if not fields["rowMainContent"]:
                errors.append("row without main content")
            errors += limit_errors(fields["rowMainContent"]) + limit_errors(
                fields["rowAsideContent"]
            )
            continue
        for name, value in fields.items():
            if isinstance(value, dict):
                continue
            size = len(value.encode("utf-16-le")) // 2  # JavaScript's .length
            if name in ("text", "plainText") and not 1 <= size <= 10_000:
                errors.append(f"{name} length {size}")
            if name.endswith("Label") and size > 500:
                errors.append(f"{name} length {size}")
            if name == "copyButtonValue" and size > 1000:
                errors.append("copy value too long")
            if name == "linkButtonUrl" and urlsplit(value).scheme not in ("http", "https"):
                errors.append(f"url {value!r}")
    return errors


@pytest.mark.parametrize("component", EVERY_COMPONENT, ids=[c["type"] for c in EVERY_COMPONENT])
def test_each_component_type_validates_and_is_accepted(schema, component):
    mapper = mapper_with([component])
    row = SourceRow("in.csv", "2", GOOD)
    ident = event_id(mapper, row)
    assert isinstance(ident, str)
    event = map_row(mapper, row, ident)
    assert isinstance(event, Event), event
    gql = COMPONENTS[component["type"]].gql
    assert list(event.input["components"][0]) == [gql]
    assert variables_errors(schema, event) == []
    with FakePlain() as fake:
        response = httpx.post(
            fake.url, json=plain.event_body(event), headers={"Authorization": "Bearer test-key"}
        )
    data = plain.classify_http(response.status_code, response.headers, response.content)
    assert isinstance(data, dict), data
    assert plain.classify_event(data, event.kind).kind == "delivered"


def test_every_schema_component_has_a_mapping_type(schema):
    names = set(schema.get_type("EventComponentInput").fields)
    assert {spec.gql for spec in COMPONENTS.values()} == names


def test_thread_events_and_upserts_validate(schema):
    mapper = mapper_with(EVERY_COMPONENT)
    thread_row = SourceRow("in.csv", "3", GOOD | {"thread": "th_01ABC"})
    event = map_row(mapper, thread_row, "contract_x")
    assert isinstance(event, Event) and event.kind == EventKind.THREAD
    assert variables_errors(schema, event) == []
    customer = map_row(mapper, SourceRow("in.csv", "4", GOOD), "contract_y")
    assert isinstance(customer, Event) and customer.upsert is not None
    node = parse(plain.UPSERT_CUSTOMER).definitions[0]
    assert isinstance(node, OperationDefinitionNode)
    coerced = get_variable_values(schema, node.variable_definitions, {"input": customer.upsert})
    assert not isinstance(coerced, list), coerced


values = st.one_of(
    st.just(""),
    st.text(max_size=30),
    st.text(min_size=490, max_size=520),
    st.sampled_from(["https://acme.example/x", "http://[oops", "ftp://x", "2024-01-01T00:00:00Z"]),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "a@b.example", "x" * 10_005, "th_1", "  "]),
    st.sampled_from(["🚀" * 5001, "é" * 10_001, "🚀" * 251, "a🚀" * 334]),
)


@given(st.fixed_dictionaries({column: values for column in COLUMNS}))
def test_any_row_maps_to_variables_plain_accepts_or_a_reason(schema, row_values):
    mapper = mapper_with(EVERY_COMPONENT)
    row = SourceRow("in.csv", "2", row_values)
    ident = event_id(mapper, row)
    if not isinstance(ident, str):
        assert ident.message
        return
    result = map_row(mapper, row, ident)
    if isinstance(result, Invalid):
        assert result.problem.code and result.problem.message
        return
    assert variables_errors(schema, result) == []
