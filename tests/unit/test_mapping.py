import pytest

from backfill.errors import MappingError
from backfill.mapping import check_columns, load_mapping, parse_mapping

BASE = {
    "title": "{{ event_type }}",
    "customer": {"email": "email"},
    "timestamp": {"column": "at"},
    "external_id": {"namespace": "ns", "key": ["id"]},
    "components": [{"type": "text", "text": "{{ body }}"}],
}
COLUMNS = ["id", "email", "at", "event_type", "body", "account_id"]


def mapping(**changes):
    data = {**BASE, **changes}
    return parse_mapping({k: v for k, v in data.items() if v is not None}, file="m.toml")


def test_the_sample_mapping_loads_and_fits_the_sample_header():
    spec = load_mapping("data/mapping.toml")
    assert spec.namespace == "acme-activity"
    from backfill.readers import read_header

    check_columns(spec, read_header("data/sample_activity.csv"), source="sample")


def test_an_unknown_column_is_named_with_a_suggestion():
    spec = mapping(components=[{"type": "link_button", "url": "{{ acount_id }}", "label": "x"}])
    with pytest.raises(MappingError) as err:
        check_columns(spec, COLUMNS, source="in.csv")
    message = str(err.value)
    assert "m.toml: components[0].url" in message
    assert "unknown column 'acount_id'" in message
    assert "did you mean 'account_id'" in message
    assert err.value.column == "acount_id"


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        pytest.param({"title": None}, "title", "is required", id="no-title"),
        pytest.param(
            {"customer": {"email": "a", "customer_id": "b"}},
            "customer.identify_by",
            "say which one identifies",
            id="two-customers",
        ),
        pytest.param(
            {"timestamp": {"column": "at", "timezone": "Mars/Base"}},
            "timestamp.timezone",
            "unknown timezone",
            id="bad-tz",
        ),
        pytest.param(
            {"external_id": {"namespace": "has space", "key": ["id"]}},
            "external_id.namespace",
            "namespace",
            id="bad-namespace",
        ),
        pytest.param(
            {"external_id": {"namespace": "ns"}}, "external_id", "either key", id="no-key"
        ),
        pytest.param(
            {"external_id": {"namespace": "ns", "key": [{"column": "id", "type": "float"}]}},
            "external_id.key[0].type",
            "unknown key type",
            id="bad-key-type",
        ),
        pytest.param(
            {"components": [{"type": "txt", "text": "x"}]},
            "components[0].type",
            "did you mean 'text'",
            id="bad-component",
        ),
        pytest.param(
            {"components": [{"type": "badge", "label": "x", "color": "PURPLE"}]},
            "components[0].color",
            "not a ComponentBadgeColor",
            id="bad-enum",
        ),
        pytest.param(
            {"components": [{"type": "spacer"}]},
            "components[0].size",
            "needs 'size'",
            id="missing-required",
        ),
        pytest.param(
            {"components": [{"type": "text", "text": "x", "colour": "MUTED"}]},
            "components[0].colour",
            "did you mean 'color'",
            id="typo-key",
        ),
        pytest.param({"kind": "thread"}, "kind", "unknown key", id="unknown-top-key"),
        pytest.param({"customer": None}, "customer", "give [customer]", id="no-target"),
        pytest.param(
            {"customer": {"email": "email", "identify_by": "customer_id"}},
            "customer.identify_by",
            "names no column",
            id="identify-by-missing",
        ),
        pytest.param(
            {"components": [{"type": "row", "main": []}]},
            "components[0].main",
            "non-empty list",
            id="empty-row",
        ),
        pytest.param(
            {"components": [{"type": "row", "main": [{"type": "row", "main": []}]}]},
            "components[0].main[0].type",
            "inside a row",
            id="row-in-row",
        ),
        pytest.param(
            {"components": [{"type": "workflow_button", "label": "x"}]},
            "components[0].workflow_id",
            "exactly one of workflow_id or workflow_key",
            id="workflow-needs-one",
        ),
        pytest.param(
            {"components": [{"type": "user", "email": "a", "user_id": "b"}]},
            "components[0].user_id",
            "exactly one of user_id or email",
            id="user-needs-one",
        ),
        pytest.param(
            {"components": [{"type": "text", "text": "x", "too_long": "cut"}]},
            "components[0].too_long",
            "not a policy",
            id="bad-policy",
        ),
        pytest.param(
            {"components": [{"type": "text", "text": "x", "too_long": {"txt": "truncate"}}]},
            "components[0].too_long.txt",
            "did you mean 'text'",
            id="policy-typo",
        ),
        pytest.param(
            {"components": [{"type": "text", "text": "{{ body "}]},
            "components[0].text",
            "syntax error",
            id="template-syntax",
        ),
    ],
)
def test_mapping_errors_name_the_file_and_key(changes, key, fragment):
    with pytest.raises(MappingError) as err:
        spec = mapping(**changes)
        check_columns(spec, COLUMNS, source="in.csv")
    assert f"m.toml: {key}" in str(err.value)
    assert fragment in str(err.value)


def test_the_id_rule_changes_with_keys_not_with_templates():
    one = mapping()
    other_title = mapping(title="{{ body }}")
    other_keys = mapping(external_id={"namespace": "ns", "key": [{"column": "id", "type": "int"}]})
    assert one.id_rule == other_title.id_rule
    assert one.hash != other_title.hash
    assert one.id_rule != other_keys.id_rule


def test_a_broken_toml_file_is_a_mapping_error(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("title = \n", encoding="utf-8")
    with pytest.raises(MappingError, match="not valid TOML"):
        load_mapping(path)
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "missing.toml")


def test_a_tab_separated_header_gets_a_hint():
    with pytest.raises(MappingError, match="looks tab-separated"):
        check_columns(mapping(), ["id\temail\tat"], source="in.tsv")
