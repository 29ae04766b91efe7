"""Exports as the warehouses write them: one test per style, each read to the same events."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from backfill.config import resolve
from backfill.errors import MappingError
from backfill.pipeline import preview, validate

#: The same three events: (id, customer, UTC instant as Plain gets it).
EXPECTED = [
    ("1001", "ada@example.com", "2023-04-08T20:09:17.000Z"),
    ("1002", "grace@example.com", "2023-04-08T20:09:17.123Z"),
    ("9007199254740993", "edith@example.com", "2024-01-31T23:00:00.000Z"),
]


def mapping(tmp_path: Path, *, source: str = "", timestamp: str = "") -> str:
    path = tmp_path / "mapping.toml"
    path.write_text(
        f"""
title = "Order {{{{ order_id }}}}"

[customer]
email = "email"

[timestamp]
column = "created_at"
{timestamp}

[external_id]
namespace = "orders"
key = [{{ column = "order_id", type = "int" }}]

[[components]]
type = "text"
text = "note: {{{{ note }}}}"
when = "note"

{source}
""",
        encoding="utf-8",
    )
    return str(path)


def events(sources: list[str], mapping_file: str) -> list[tuple[str, str, str]]:
    shown = preview(resolve(sources=sources, mapping=mapping_file), n=100)
    assert all("variables" in item for item in shown), shown
    return [
        (
            item["variables"]["input"]["title"].removeprefix("Order "),
            item["variables"]["input"]["customerIdentifier"]["emailAddress"],
            item["variables"]["input"]["timestamp"],
        )
        for item in shown
    ]


def ids(sources: list[str], mapping_file: str) -> list[str]:
    return [
        item["external_id"]
        for item in preview(resolve(sources=sources, mapping=mapping_file), n=100)
    ]


@pytest.fixture
def baseline(tmp_path: Path) -> list[str]:
    """The externalIds from a tidy CSV with a header and ISO 8601 timestamps."""
    folder = tmp_path / "tidy"
    folder.mkdir()
    csv = folder / "tidy.csv"
    csv.write_text(
        "order_id,email,created_at,note\n"
        "1001,ada@example.com,2023-04-08T20:09:17Z,\n"
        "1002,grace@example.com,2023-04-08T20:09:17.123Z,hi\n"
        "9007199254740993,edith@example.com,2024-01-31T23:00:00Z,\n",
        encoding="utf-8",
    )
    m = mapping(folder)
    assert events([str(csv)], m) == EXPECTED
    return ids([str(csv)], m)


def test_snowflake_copy_into_headerless_gzip_shards_with_timestamp_tz(tmp_path, baseline):
    unload = tmp_path / "unload"
    unload.mkdir()
    rows = [
        "1001,ada@example.com,2023-04-08 21:09:17.000 +0100,\\N\n",
        '1002,grace@example.com,2023-04-08 22:09:17.123 +0200,"hi"\n',
        "9007199254740993,edith@example.com,2024-02-01 00:00:00.000 +0100,\\N\n",
    ]
    (unload / "data_0_0_0.csv.gz").write_bytes(gzip.compress("".join(rows[:2]).encode()))
    (unload / "data_0_1_0.csv.gz").write_bytes(gzip.compress(rows[2].encode()))
    source = '[source]\ncolumns = ["order_id", "email", "created_at", "note"]\nnull = ["\\\\N"]'
    m = mapping(tmp_path, source=source)
    assert events([str(unload)], m) == EXPECTED
    assert ids([str(unload)], m) == baseline
    # \\N reads as empty: the note component is left out.
    first = preview(resolve(sources=[str(unload)], mapping=m), n=1)[0]["variables"]["input"]
    assert first["components"] == []


def test_redshift_unload_pipe_delimited_headerless_naive_timestamps(tmp_path, baseline):
    part = tmp_path / "0000_part_00"
    part.write_text(
        "1001|ada@example.com|2023-04-08 22:09:17|\n"
        "1002|grace@example.com|2023-04-08 22:09:17.123456|hi\n"
        "9007199254740993|edith@example.com|2024-02-01 00:00:00|\n",
        encoding="utf-8",
    )
    source = '[source]\ndelimiter = "|"\ncolumns = ["order_id", "email", "created_at", "note"]'
    m = mapping(tmp_path, source=source, timestamp='timezone = "Europe/Berlin"')
    assert events([str(part)], m) == EXPECTED
    assert ids([str(part)], m) == baseline


def test_bigquery_json_export_ints_as_strings_utc_suffix_and_nulls_left_out(tmp_path, baseline):
    path = tmp_path / "export-000000000000.json.gz"
    lines = [
        {"order_id": "1001", "email": "ada@example.com", "created_at": "2023-04-08 20:09:17 UTC"},
        {
            "order_id": "1002",
            "email": "grace@example.com",
            "created_at": "2023-04-08 20:09:17.123 UTC",
            "note": "hi",
        },
        {
            "order_id": "9007199254740993",
            "email": "edith@example.com",
            "created_at": "2024-01-31 23:00:00 UTC",
        },
    ]
    path.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    m = mapping(tmp_path)
    assert events([str(path)], m) == EXPECTED
    assert ids([str(path)], m) == baseline


@pytest.mark.parametrize(
    ("unit", "values"),
    [
        ("s", ["1680984557", "1680984557.123", "1706742000"]),
        ("ms", ["1680984557000", "1680984557123", "1706742000000"]),
    ],
)
def test_epoch_seconds_or_milliseconds_where_the_mapping_says_so(tmp_path, baseline, unit, values):
    path = tmp_path / "epoch.csv"
    emails = ["ada@example.com", "grace@example.com", "edith@example.com"]
    ids_ = ["1001", "1002", "9007199254740993"]
    body = "".join(f"{i},{e},{v},\n" for i, e, v in zip(ids_, emails, values, strict=True))
    path.write_text("order_id,email,created_at,note\n" + body, encoding="utf-8")
    m = mapping(tmp_path, timestamp=f'unit = "{unit}"')
    assert events([str(path)], m) == EXPECTED
    assert ids([str(path)], m) == baseline


def test_a_bad_epoch_value_is_an_invalid_row_naming_the_column(tmp_path):
    path = tmp_path / "epoch.csv"
    path.write_text(
        "order_id,email,created_at,note\n1,a@example.com,yesterday,\n2,b@example.com,0,\n",
        encoding="utf-8",
    )
    summary = validate(
        resolve(
            sources=[str(path)],
            mapping=mapping(tmp_path, timestamp='unit = "s"'),
            results_dir=str(tmp_path),
        )
    )
    assert (summary.valid, summary.invalid) == (1, 1)
    assert "created_at" in summary.examples["bad_timestamp"][0]


def test_source_options_are_checked_when_the_mapping_loads(tmp_path):
    for source, words in [
        ('[source]\ndelimiter = "||"', "source.delimiter"),
        ('[source]\ncolumns = ["a", "a"]', "source.columns"),
        ('[source]\nnull = [""]', "source.null"),
        ("[source]\nheader = false", "header"),
    ]:
        with pytest.raises(MappingError, match=words):
            preview(resolve(sources=["x.csv"], mapping=mapping(tmp_path, source=source)))
    with pytest.raises(MappingError, match="timestamp.unit"):
        preview(resolve(sources=["x.csv"], mapping=mapping(tmp_path, timestamp='unit = "days"')))
