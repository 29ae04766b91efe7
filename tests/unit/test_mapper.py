import pytest
from hypothesis import given
from hypothesis import strategies as st

from backfill.mapper import compile_mapper, event_id, map_row
from backfill.mapping import parse_mapping
from backfill.models import Event, Invalid, RowProblem, SourceRow

DOC = {
    "title": "{{ event_type | replace('_', ' ') | capitalize }}",
    "customer": {"email": "email"},
    "timestamp": {"column": "at", "timezone": "Europe/Paris"},
    "external_id": {"namespace": "ns", "key": [{"column": "id", "type": "int"}]},
    "components": [
        {"type": "text", "text": "{{ body }}", "size": "M", "color": "MUTED", "when": "body"},
        {"type": "badge", "label": "{{ plan }}", "color": "GREEN"},
        {"type": "link_button", "url": "{{ url }}", "label": "Open"},
        {"type": "copy_button", "value": "{{ id }}", "tooltip": "{{ tip }}"},
        {"type": "spacer", "size": "XS"},
        {"type": "divider"},
        {"type": "plain_text", "text": "{{ row['event_type'] }}"},
        {"type": "date_time", "value": "{{ at }}"},
    ],
}
MAPPER = compile_mapper(parse_mapping(DOC, file="m.toml"))
VALUES = {
    "id": "00042",
    "email": "zoë@acme.example",
    "at": "2024-07-01 12:00:00",
    "event_type": "plan_upgraded",
    "body": 'He said "hi", then\nleft 🚀',
    "plan": "growth",
    "url": "https://admin.acme.example/x?a=1",
    "tip": "",
}


def row(**changes):
    return SourceRow("in.csv", "7", {**VALUES, **changes})


def mapped(**changes):
    r = row(**changes)
    ident = event_id(MAPPER, r)
    assert isinstance(ident, str)
    return map_row(MAPPER, r, ident)


def test_a_row_becomes_create_customer_event_input():
    event = mapped()
    assert isinstance(event, Event)
    assert event.input == {
        "customerIdentifier": {"emailAddress": "zoë@acme.example"},
        "externalId": event.external_id,
        "title": "Plan upgraded",
        "timestamp": "2024-07-01T10:00:00.000Z",
        "components": [
            {
                "componentText": {
                    "text": 'He said "hi", then\nleft 🚀',
                    "textSize": "M",
                    "textColor": "MUTED",
                }
            },
            {"componentBadge": {"badgeLabel": "growth", "badgeColor": "GREEN"}},
            {
                "componentLinkButton": {
                    "linkButtonUrl": "https://admin.acme.example/x?a=1",
                    "linkButtonLabel": "Open",
                }
            },
            {"componentCopyButton": {"copyButtonValue": "00042"}},
            {"componentSpacer": {"spacerSize": "XS"}},
            {"componentDivider": {}},
            {"componentPlainText": {"plainText": "plan_upgraded"}},
            {"componentDateTime": {"dateTimeIso8601": "2024-07-01T10:00:00.000Z"}},
        ],
    }
    assert event.position == "7" and event.source == "in.csv"


def test_when_false_leaves_the_component_out():
    event = mapped(body="")
    assert isinstance(event, Event)
    assert not any("componentText" in c for c in event.input["components"])


@pytest.mark.parametrize(
    ("changes", "code", "column"),
    [
        pytest.param({"event_type": ""}, "empty", "event_type", id="empty-title"),
        pytest.param({"email": " "}, "missing_customer", "email", id="no-customer"),
        pytest.param({"email": "not-an-email"}, "bad_customer", "email", id="bad-email"),
        pytest.param({"at": "last tuesday"}, "bad_timestamp", "at", id="bad-timestamp"),
        pytest.param({"plan": ""}, "empty", "plan", id="required-label-empty"),
        pytest.param({"plan": "x" * 501}, "too_long", "plan", id="label-too-long"),
        pytest.param({"body": "x" * 10_001}, "too_long", "body", id="text-too-long"),
        pytest.param({"url": "javascript:alert(1)"}, "bad_url", "url", id="bad-url"),
        pytest.param({"url": "https://a b.example"}, "bad_url", "url", id="url-with-space"),
    ],
)
def test_rows_that_plain_would_refuse_are_invalid_with_a_reason(changes, code, column):
    result = mapped(**changes)
    assert isinstance(result, Invalid)
    assert result.problem.code == code
    assert result.problem.column == column
    assert result.position == "7"


def test_the_id_comes_from_key_columns_only():
    assert event_id(MAPPER, row()) == event_id(MAPPER, row(id="42", body="other", plan="x"))
    assert event_id(MAPPER, row()) != event_id(MAPPER, row(id="43"))
    problem = event_id(MAPPER, row(id="4.2"))
    assert isinstance(problem, RowProblem) and problem.column == "id"


def test_an_id_template_is_used_as_given():
    doc = {**DOC, "external_id": {"namespace": "ns", "template": "evt-{{ id }}"}}
    mapper = compile_mapper(parse_mapping(doc, file="m.toml"))
    assert event_id(mapper, row()) == "evt-00042"
    assert isinstance(event_id(mapper, row(id="")), RowProblem)


def test_a_template_error_is_the_rows_problem_not_a_crash():
    doc = {**DOC, "title": "{{ event_type + 1 }}"}
    mapper = compile_mapper(parse_mapping(doc, file="m.toml"))
    result = map_row(mapper, row(), "ns_x")
    assert isinstance(result, Invalid) and result.problem.code == "template"


def test_the_sandbox_refuses_unsafe_templates():
    doc = {**DOC, "title": "{{ event_type.__class__.__mro__ }}"}
    mapper = compile_mapper(parse_mapping(doc, file="m.toml"))
    result = map_row(mapper, row(), "ns_x")
    assert isinstance(result, Invalid) and result.problem.code == "template"


@given(
    st.fixed_dictionaries(
        {k: st.text(max_size=40) for k in VALUES},
    )
)
def test_any_row_maps_to_an_event_or_a_reason(values):
    r = SourceRow("in.csv", "2", values)
    ident = event_id(MAPPER, r)
    if isinstance(ident, RowProblem):
        return
    result = map_row(MAPPER, r, ident)
    assert isinstance(result, Event | Invalid)
    if isinstance(result, Event):
        assert result.input["title"].strip()
        assert result.input["timestamp"].endswith("Z")
        assert map_row(MAPPER, r, ident) == result


def mapper_for(title, components=(), external_id=None):
    doc = {
        "title": title,
        "customer": {"email": "email"},
        "timestamp": {"column": "at"},
        "external_id": external_id or {"namespace": "ns", "key": ["id"]},
        "components": list(components),
    }
    return compile_mapper(parse_mapping(doc, file="m.toml"))


def test_a_column_named_like_a_jinja_global_shadows_it():
    mapper = mapper_for(
        "Deploy to {{ namespace }}", [{"type": "text", "text": "{{ range | upper }}"}]
    )
    values = {
        "id": "1",
        "email": "a@b.example",
        "at": "2024-01-01T00:00:00Z",
        "namespace": "prod",
        "range": "r1",
    }
    event = map_row(mapper, SourceRow("in.csv", "2", values), "ns_1")
    assert isinstance(event, Event)
    assert event.input["title"] == "Deploy to prod"
    assert event.input["components"] == [{"componentText": {"text": "R1"}}]


def test_an_id_template_may_not_read_jinja_globals():
    from backfill.errors import MappingError

    with pytest.raises(MappingError, match="externalId template reads range"):
        mapper_for("t", external_id={"namespace": "ns", "template": "{{ range }}-{{ id }}"})


def test_a_column_named_row_is_read_with_row_lookups_and_row_stays_the_whole_row():
    mapper = mapper_for(
        "t",
        [
            {"type": "text", "text": "{{ row['row'] }}/{{ row['id'] }}"},
            {"type": "plain_text", "text": "{{ row | length }}"},
        ],
    )
    values = {"id": "7", "email": "a@b.example", "at": "2024-01-01T00:00:00Z", "row": "R"}
    event = map_row(mapper, SourceRow("in.csv", "2", values), "ns_1")
    assert isinstance(event, Event)
    assert event.input["components"][0] == {"componentText": {"text": "R/7"}}
    assert event.input["components"][1] == {"componentPlainText": {"plainText": "4"}}


def test_when_treats_blank_as_empty_and_literals_as_literals():
    mapper = mapper_for(
        "t",
        [
            {"type": "text", "text": "{{ body }}", "when": "body"},
            {"type": "plain_text", "text": "always", "when": "true"},
            {"type": "plain_text", "text": "never", "when": "false"},
        ],
    )
    values = {"id": "1", "email": "a@b.example", "at": "2024-01-01T00:00:00Z", "body": "   "}
    event = map_row(mapper, SourceRow("in.csv", "2", values), "ns_1")
    assert isinstance(event, Event)
    assert event.input["components"] == [{"componentPlainText": {"plainText": "always"}}]


def test_templates_cannot_change_the_row():
    mapper = mapper_for("{{ row.update({'email': 'evil@x.example'}) }}")
    values = {"id": "1", "email": "a@b.example", "at": "2024-01-01T00:00:00Z"}
    result = map_row(mapper, SourceRow("in.csv", "2", values), "ns_1")
    assert isinstance(result, Invalid) and result.problem.code == "template"
    assert values["email"] == "a@b.example"


def test_lengths_count_utf16_units_as_plain_does():
    mapper = mapper_for("t", [{"type": "badge", "label": "{{ body }}"}])
    base = {"id": "1", "email": "a@b.example", "at": "2024-01-01T00:00:00Z"}
    ok = map_row(mapper, SourceRow("in.csv", "2", base | {"body": "🚀" * 250}), "ns_1")
    assert isinstance(ok, Event)
    too_long = map_row(mapper, SourceRow("in.csv", "2", base | {"body": "🚀" * 251}), "ns_1")
    assert isinstance(too_long, Invalid) and "502 characters" in too_long.problem.message
    cut = mapper_for("t", [{"type": "badge", "label": "{{ body }}", "too_long": "truncate"}])
    event = map_row(cut, SourceRow("in.csv", "2", base | {"body": "a" + "🚀" * 300}), "ns_1")
    assert isinstance(event, Event)
    label = event.input["components"][0]["componentBadge"]["badgeLabel"]
    assert len(label.encode("utf-16-le")) // 2 <= 500 and label.endswith("…")
