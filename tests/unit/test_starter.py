import csv
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2.sandbox import SandboxedEnvironment

import backfill
from backfill.errors import ConfigError
from backfill.ids import NAMESPACE_PATTERN
from backfill.readers import read_header
from backfill.starter import starter_mapping, write_starter
from tests.conftest import SAMPLE

SAMPLE_SOURCE = "data/sample_activity.csv"
#: Field names of a template component; the rest (type, size, color...) are constants.
TEMPLATE_KEYS = ("text", "url", "label", "value", "tooltip", "email", "user_id")


def sample_header_and_rows(limit: int = 200) -> tuple[list[str], list[dict[str, str]]]:
    with open(SAMPLE, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [row for _, row in zip(range(limit), reader, strict=False)]
        return list(reader.fieldnames or []), rows


def component_types_in_schema() -> list[str]:
    """Every member of Plain's EventComponentInput, as the mapping's snake_case type."""
    schema = Path(backfill.__file__).parent / "schema" / "plain_subset.graphql"
    block = re.search(r"input EventComponentInput \{(.*?)\}", schema.read_text(), re.S)
    assert block is not None
    names = re.findall(r"^\s*component(\w+):", block.group(1), re.M)
    return [re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for name in names]


def uncomment_examples(text: str) -> str:
    """The mapping with its commented component examples switched on."""
    start = text.index("# More component types")
    lines = [
        line[2:] if re.match(r"# (\[\[|[a-z_]+ = )", line) else line
        for line in text[start:].split("\n")  # not splitlines: names may hold U+0085
    ]
    return text[:start] + "\n".join(lines)


def components_of(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for component in doc.get("components", []):
        yield component
        for side in ("main", "aside"):
            yield from component.get(side, [])


def render_everything(doc: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """Render the title, every component template and every `when` against one row.

    Strict undefined names, as the mapper renders them: a reference that does not reach
    its column raises.
    """
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    context = {**values, "row": values}
    rendered: dict[str, Any] = {"title": env.from_string(doc["title"]).render(context)}
    for i, component in enumerate(components_of(doc)):
        for key in TEMPLATE_KEYS:
            if key in component:
                rendered[f"{i}.{key}"] = env.from_string(component[key]).render(context)
        if "when" in component:
            rendered[f"{i}.when"] = env.compile_expression(component["when"])(**context)
    return rendered


# --- the sample data -------------------------------------------------------------------


def test_the_sample_gets_the_columns_a_person_would_pick():
    columns, rows = sample_header_and_rows()
    doc = tomllib.loads(starter_mapping(columns, rows, source=SAMPLE_SOURCE))

    assert doc["title"] == "{{ event_type | replace('_', ' ') | capitalize }}"
    assert doc["customer"] == {"email": "customer_email"}
    assert doc["timestamp"] == {"column": "occurred_at", "timezone": "UTC"}
    assert doc["external_id"] == {
        "namespace": "sample_activity",
        "key": [{"column": "event_id", "type": "string"}],
    }
    text, link, *extras = doc["components"]
    assert text == {"type": "text", "text": "{{ description }}", "when": "description"}
    assert link["type"] == "link_button"
    assert (link["url"], link["when"]) == ("{{ url }}", "url")
    assert [(c["type"], c["text"], c["when"]) for c in extras] == [
        ("plain_text", "plan: {{ plan }}", "plan"),
        ("plain_text", "amount: {{ amount }}", "amount"),
        ("plain_text", "currency: {{ currency }}", "currency"),
    ]
    assert "kind" not in doc


def test_the_sample_templates_render_its_rows():
    columns, rows = sample_header_and_rows(limit=20)
    doc = tomllib.loads(starter_mapping(columns, rows, source=SAMPLE_SOURCE))
    rendered = render_everything(doc, rows[0])
    assert rendered["title"] == "Plan upgraded"
    assert rendered["0.text"] == rows[0]["description"]


def test_the_header_says_where_it_came_from_and_how_to_try_it():
    columns, rows = sample_header_and_rows(limit=5)
    text = starter_mapping(columns, rows, source=SAMPLE_SOURCE)
    first, *_ = text.splitlines()
    assert first == f"# Starter mapping written by `backfill init` from {SAMPLE_SOURCE}."
    assert f"#   backfill validate {SAMPLE_SOURCE} --mapping " in text
    assert f"#   backfill preview {SAMPLE_SOURCE} --mapping " in text
    assert "check:" in text  # the sample mixes naive and offset timestamps


def test_every_component_type_has_a_commented_example_after_the_real_ones():
    columns, rows = sample_header_and_rows()
    text = starter_mapping(columns, rows, source=SAMPLE_SOURCE)
    real_part, examples = text.split("# More component types", 1)
    types = component_types_in_schema()
    assert len(types) == 11 and "row" in types and "workflow_button" in types

    for name in types:
        assert f'# type = "{name}"' in examples, name
    assert "# [[components.main]]" in examples
    assert "# [[components.aside]]" in examples
    assert '# too_long = "truncate"' in examples
    assert re.search(r'^# when = "', examples, re.M)
    assert re.search(r'^# \[limits\]\n# too_long = "reject"', real_part, re.M)

    switched_on = tomllib.loads(uncomment_examples(text))
    example_types = [c["type"] for c in switched_on["components"]][-len(types) :]
    assert sorted(example_types) == sorted(types)
    row = switched_on["components"][-1]
    assert [c["type"] for c in row["main"]] == ["text"]
    assert [c["type"] for c in row["aside"]] == ["badge"]
    render_everything(switched_on, sample_header_and_rows(limit=1)[1][0])


# --- odd headers ---------------------------------------------------------------------

ODD_HEADERS = [
    pytest.param(
        ["Event ID", "Customer Email", "Occurred At", "Event Type", "Long Description"],
        {
            "key": "Event ID",
            "email": "Customer Email",
            "timestamp": "Occurred At",
            "title": "{{ row['Event Type'] | replace('_', ' ') | capitalize }}",
            "text": ("{{ row['Long Description'] }}", "row['Long Description']"),
        },
        id="spaces",
    ),
    pytest.param(
        ["id", "email", "created_at", 'it\'s "quoted"', "back\\slash", "{{x}}"],
        {
            "key": "id",
            "plain_text": [
                ("it's \"quoted\": {{ row['it\\'s \"quoted\"'] }}", "row['it\\'s \"quoted\"']"),
                ("back\\slash: {{ row['back\\\\slash'] }}", "row['back\\\\slash']"),
                ("{{ row['{{x}}'] }}", "row['{{x}}']"),
            ],
        },
        id="quotes-backslashes-braces",
    ),
    pytest.param(
        ["ID", "Courriel", "Date", "Описание", "naïve"],
        {
            "key": "ID",
            "email": "Courriel",
            "timestamp": "Date",
            "text": None,
            "plain_text": [
                ("Описание: {{ row['Описание'] }}", "row['Описание']"),
                ("naïve: {{ row['naïve'] }}", "row['naïve']"),
            ],
        },
        id="unicode",
    ),
    pytest.param(
        ["who", "when", "what"],
        {"key": "who", "check": "no obvious unique id column"},
        id="no-id-column",
    ),
    pytest.param(
        ["id", "email", "amount"],
        {"timestamp": "id", "check": "no timestamp-like column"},
        id="no-timestamp-column",
    ),
    pytest.param(
        ["Email", "email", "EMAIL", "event id", "event_id", "Event-ID", "created_at"],
        {"key": "event id", "email": "Email", "timestamp": "created_at"},
        id="duplicate-looking-names",
    ),
    pytest.param(
        ["id", "email", "created_at", "row", "range", "true", "for"],
        {
            "plain_text": [
                ("row: {{ row['row'] }}", "row['row']"),
                ("range: {{ row['range'] }}", "row['range']"),
                ("true: {{ row['true'] }}", "row['true']"),
            ]
        },
        id="jinja-words",
    ),
    pytest.param(
        ["id", "email", "created_at", "tab\there", "line\nbreak", "del\x7f"],
        {
            "plain_text": [
                ("{{ row['tab\\x09here'] }}", "row['tab\\x09here']"),
                ("{{ row['line\\x0abreak'] }}", "row['line\\x0abreak']"),
                ("{{ row['del\\x7f'] }}", "row['del\\x7f']"),
            ]
        },
        id="control-characters",
    ),
]


def odd_rows(columns: Sequence[str]) -> list[dict[str, str]]:
    """Two sample rows: emails where the name says email, ISO timestamps, else words."""

    def value(column: str, i: int) -> str:
        words = column.lower()
        if "mail" in words or "courriel" in words:
            return f"person{i}@example.com"
        if "at" in words.split() or words.endswith("_at") or words == "date" or "when" in words:
            return f"2024-05-0{i}T09:00:00+00:00"
        return f"{column[:3]} value {i}"

    return [{c: value(c, i) for c in columns} for i in (1, 2)]


@pytest.mark.parametrize(("columns", "expected"), ODD_HEADERS)
def test_odd_headers_give_valid_toml_with_row_lookups(columns, expected):
    rows = odd_rows(columns)
    text = starter_mapping(columns, rows, source="odd.csv")
    doc = tomllib.loads(text)

    if "key" in expected:
        assert doc["external_id"]["key"] == [{"column": expected["key"], "type": "string"}]
    if "email" in expected:
        assert doc["customer"] == {"email": expected["email"]}
    if "timestamp" in expected:
        assert doc["timestamp"]["column"] == expected["timestamp"]
    if "title" in expected:
        assert doc["title"] == expected["title"]
    if "check" in expected:
        assert f"# check: {expected['check']}" in text
    texts = [(c["text"], c["when"]) for c in doc["components"] if c["type"] == "text"]
    if "text" in expected:
        assert texts == ([expected["text"]] if expected["text"] else [])
    if "plain_text" in expected:
        extras = [(c["text"], c["when"]) for c in doc["components"] if c["type"] == "plain_text"]
        assert extras == expected["plain_text"]
    render_everything(doc, rows[0])
    render_everything(tomllib.loads(uncomment_examples(text)), rows[0])


def test_a_lookup_reaches_the_value_of_an_awkward_column():
    columns = ["id", "email", "created_at", 'it\'s "quoted" \\ {{x}}']
    rows = odd_rows(columns)
    doc = tomllib.loads(starter_mapping(columns, rows, source="odd.csv"))
    (extra,) = [c for c in doc["components"] if c["type"] == "plain_text"]
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    assert env.from_string(extra["text"]).render(row=rows[0]) == rows[0][columns[3]]


def test_without_a_title_column_the_title_is_a_constant_to_check():
    text = starter_mapping(["id", "email", "at"], [], source="x.csv")
    assert tomllib.loads(text)["title"] == "Activity"
    assert "# check: no event-type column found" in text


def test_values_choose_the_email_and_timestamp_columns_when_names_do_not():
    columns = ["ref", "contact", "stamp"]
    rows = [
        {"ref": f"r{i}", "contact": f"p{i}@example.com", "stamp": f"2024-01-0{i} 10:00"}
        for i in (1, 2, 3)
    ]
    text = starter_mapping(columns, rows, source="x.csv")
    doc = tomllib.loads(text)
    assert doc["customer"] == {"email": "contact"}
    assert doc["timestamp"]["column"] == "stamp"
    assert "# check: chosen because its values look like email addresses" in text
    assert "# check: chosen because its values look like timestamps" in text


def test_a_repeating_id_column_loses_to_a_unique_one_and_is_flagged_alone():
    rows = [{"account_id": "a1", "event_key": f"k{i}"} for i in range(3)]
    doc = tomllib.loads(starter_mapping(["account_id", "event_key"], rows, source="x.csv"))
    assert doc["external_id"]["key"] == [{"column": "event_key", "type": "string"}]

    rows = [{"account_id": "a1", "note": f"n{i}"} for i in range(3)]
    text = starter_mapping(["account_id", "note"], rows, source="x.csv")
    assert tomllib.loads(text)["external_id"]["key"][0]["column"] == "account_id"
    assert '# check: values of "account_id" repeat or are empty in the first rows' in text


def test_without_an_email_a_plain_customer_id_column_identifies_the_customer():
    rows = [{"id": "1", "cust": "c_01HABCDEFGHJKMNPQRSTVWXYZ0", "at": "2024-01-01T00:00:00Z"}]
    doc = tomllib.loads(starter_mapping(["id", "cust", "at"], rows, source="x.csv"))
    assert doc["customer"] == {"customer_id": "cust"}


def test_a_thread_column_is_offered_commented_out():
    text = starter_mapping(["id", "email", "created_at", "thread_id"], [], source="x.csv")
    assert "thread" not in tomllib.loads(text)
    assert '# [thread]\n# id = "thread_id"' in text


def test_no_columns_is_a_programming_error():
    with pytest.raises(ValueError, match="at least one column"):
        starter_mapping([], [], source="x.csv")


@given(
    columns=st.lists(st.text(max_size=12), min_size=1, max_size=8, unique=True),
    value=st.text(max_size=20),
)
def test_any_header_gives_valid_toml_whose_templates_reach_their_columns(columns, value):
    rows = [{c: value for c in columns}]
    text = starter_mapping(columns, rows, source="any.csv")
    doc = tomllib.loads(text)
    assert doc["timestamp"]["column"] in columns
    assert doc["external_id"]["key"][0]["column"] in columns
    render_everything(doc, rows[0])
    render_everything(tomllib.loads(uncomment_examples(text)), rows[0])


# --- namespaces ----------------------------------------------------------------------


def namespace_for(source: str) -> str:
    namespace: str = tomllib.loads(starter_mapping(["id"], [], source=source))["external_id"][
        "namespace"
    ]
    return namespace


@pytest.mark.parametrize(
    ("source", "namespace"),
    [
        pytest.param("data/sample_activity.csv", "sample_activity", id="stem"),
        pytest.param("exports/Sign-ups 2024.csv", "sign-ups-2024", id="spaces-and-case"),
        pytest.param("C:\\exports\\Orders.CSV", "orders", id="windows-path"),
        pytest.param("orders.2024.csv", "orders.2024", id="inner-dot-kept"),
        pytest.param("données été.csv", "donnees-ete", id="accents-dropped"),
        pytest.param("My Export (2023) – final!.csv", "my-export-2023-final", id="punctuation"),
        pytest.param("_staging.csv", "job-_staging", id="must-start-alphanumeric"),
        pytest.param("--x.csv", "x", id="leading-dashes"),
        pytest.param("活动.csv", "job", id="nothing-left"),
        pytest.param("a" * 100 + ".csv", "a" * 64, id="trimmed-to-64"),
    ],
)
def test_the_namespace_comes_from_the_file_name(source, namespace):
    assert namespace_for(source) == namespace
    assert NAMESPACE_PATTERN.match(namespace)


@given(st.text(max_size=120))
def test_every_source_name_gives_a_valid_namespace(source):
    assert NAMESPACE_PATTERN.match(namespace_for(source))


# --- writing the file ----------------------------------------------------------------


def write_csv(tmp_path: Path, text: str, name: str = "activity.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return str(path)


def test_write_starter_writes_the_text_it_returns(tmp_path):
    source = write_csv(tmp_path, "id,email,created_at\n1,a@example.com,2024-01-01T00:00:00Z\n")
    output = str(tmp_path / "mapping.toml")
    text = write_starter(source, output)
    assert Path(output).read_text(encoding="utf-8") == text
    assert tomllib.loads(text)["external_id"]["namespace"] == "activity"


def test_write_starter_keeps_an_existing_file_unless_forced(tmp_path):
    source = write_csv(tmp_path, "id,email,created_at\n1,a@example.com,2024-01-01T00:00:00Z\n")
    output = tmp_path / "mapping.toml"
    output.write_text("# mine\n", encoding="utf-8")

    with pytest.raises(ConfigError) as err:
        write_starter(source, str(output))
    assert str(err.value) == f"{output} exists; pass --force to overwrite it"
    assert output.read_text(encoding="utf-8") == "# mine\n"

    text = write_starter(source, str(output), force=True)
    assert output.read_text(encoding="utf-8") == text != "# mine\n"


def test_write_starter_skips_rows_the_reader_flags(tmp_path):
    # The short row would read as all-empty values and make the id column look repeated.
    source = write_csv(
        tmp_path,
        "id,email,created_at\n1,a@example.com,2024-01-01T00:00:00Z\nshort\n"
        "2,b@example.com,2024-01-02T00:00:00Z\n",
    )
    text = write_starter(source, str(tmp_path / "m.toml"))
    assert "repeat or are empty" not in text


def test_write_starter_reads_only_the_first_sample_rows(tmp_path):
    source = write_csv(
        tmp_path,
        "id,email,created_at\n1,a@x.io,2024-01-01\n2,b@x.io,2024-01-02\n1,c@x.io,2024-01-03\n",
    )
    assert "repeat" not in write_starter(source, str(tmp_path / "a.toml"), sample_rows=2)
    assert "repeat" in write_starter(source, str(tmp_path / "b.toml"), sample_rows=3)


def test_write_starter_names_an_unwritable_output(tmp_path):
    source = write_csv(tmp_path, "id\n1\n")
    with pytest.raises(ConfigError, match="cannot write"):
        write_starter(source, str(tmp_path / "missing" / "m.toml"))


def test_the_starter_for_the_sample_loads_and_fits_its_header(tmp_path):
    # Needs the mapping loader that reads this format ([thread], identify_by, too_long...).
    from backfill.mapping import check_columns, load_mapping

    output = tmp_path / "mapping.toml"
    write_starter(SAMPLE, str(output))
    spec = load_mapping(output)
    check_columns(spec, read_header(SAMPLE), source=SAMPLE)
    assert spec.namespace == "sample_activity"
    assert [(k.column, k.type) for k in spec.keys] == [("event_id", "string")]


def test_init_reads_parquet_and_json_lines_too(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from backfill.config import resolve
    from backfill.pipeline import validate

    table = pa.table(
        {
            "order_id": [1, 2, 3],
            "email": ["a@example.com", "b@example.com", "c@example.com"],
            "created_at": pa.array([1, 2, 3], pa.timestamp("s", tz="UTC")),
        }
    )
    pq.write_table(table, tmp_path / "orders.parquet")
    lines = [json.dumps(r, default=str) + "\n" for r in table.to_pylist()]
    (tmp_path / "orders.jsonl").write_text("".join(lines), encoding="utf-8")
    for name in ("orders.parquet", "orders.jsonl"):
        source = str(tmp_path / name)
        output = str(tmp_path / f"{name}.toml")
        text = write_starter(source, output)
        assert 'email = "email"' in text and 'column = "created_at"' in text
        summary = validate(resolve(sources=[source], mapping=output, results_dir=str(tmp_path)))
        assert (summary.rows_read, summary.invalid) == (3, 0), name
