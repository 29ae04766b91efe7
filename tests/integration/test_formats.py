"""The same data as CSV, CSV.gz, Parquet (several files and row groups) and JSONL.gz:
identical externalIds and identical variables, and the same run against the fake server."""

from __future__ import annotations

import csv
import gzip
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backfill import run
from backfill.config import resolve
from backfill.errors import ConfigError, SourceError
from backfill.fakeplain import FakePlain
from backfill.mapper import compile_mapper, event_id, map_row
from backfill.mapping import load_mapping
from backfill.models import Event
from backfill.pipeline import preview, validate
from backfill.readers import expand, read_chunks
from tests.conftest import settings_for

ROWS = 1000
MAPPING = """
title = "{{ kind }} of {{ amount }}"

[customer]
email = "email"

[timestamp]
column = "occurred_at"

[external_id]
namespace = "orders"
key = [{ column = "order_id", type = "int" }, { column = "occurred_at", type = "timestamp" }]

[[components]]
type = "text"
text = "Order {{ order_id }} at {{ occurred_at }}: paid {{ paid }}, note {{ note }}"

[[components]]
type = "plain_text"
text = "{{ amount }} EUR, {{ quantity }} items"
when = "quantity"
"""


def dataset() -> list[dict]:
    rand = random.Random(7)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    return [
        {
            "order_id": 10_000_000_000 + n,
            "occurred_at": start + timedelta(seconds=rand.randrange(10**8), microseconds=n),
            "email": f"buyer{n % 50}@example.com",
            "kind": rand.choice(["order_placed", "order_refunded"]),
            "amount": Decimal(rand.randrange(1, 10**6)).scaleb(-2),
            "quantity": None if n % 7 == 0 else rand.randrange(1, 9),
            "paid": n % 3 != 0,
            "note": None if n % 5 == 0 else f"note «{n}»",
        }
        for n in range(ROWS)
    ]


def text(value: object) -> str:
    """How a warehouse writes each value in CSV."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso(value)
    return str(value)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC, microseconds only when there are some (the documented text form)."""
    fraction = f".{moment.microsecond:06d}" if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


SCHEMA = pa.schema(
    [
        ("order_id", pa.int64()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("email", pa.string()),
        ("kind", pa.string()),
        ("amount", pa.decimal128(12, 2)),
        ("quantity", pa.int32()),
        ("paid", pa.bool_()),
        ("note", pa.string()),
    ]
)


def write_all(folder: Path, records: list[dict]) -> dict[str, list[str]]:
    folder.mkdir(parents=True, exist_ok=True)
    names = list(records[0])
    with open(folder / "orders.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        writer.writerows([text(r[name]) for name in names] for r in records)
    (folder / "orders.csv.gz").write_bytes(gzip.compress((folder / "orders.csv").read_bytes()))
    shards = folder / "parquet"
    shards.mkdir()
    for n, part in enumerate(range(0, ROWS, 400)):
        table = pa.Table.from_pylist(records[part : part + 400], schema=SCHEMA)
        pq.write_table(table, shards / f"part-{n:05d}.parquet", row_group_size=64)
    with gzip.open(folder / "orders.jsonl.gz", "wt", encoding="utf-8") as fh:
        for record in records:
            # BigQuery leaves nulls out and writes timestamps as text; the amount is a JSON
            # number written with its scale (193.00), as a NUMERIC column is.
            rest = {
                key: iso(value) if isinstance(value, datetime) else value
                for key, value in record.items()
                if value is not None and key != "amount"
            }
            fh.write(f'{{"amount": {record["amount"]}, ' + json.dumps(rest)[1:] + "\n")
    return {
        "csv": [str(folder / "orders.csv")],
        "csv.gz": [str(folder / "orders.csv.gz")],
        "parquet": [str(shards)],
        "jsonl.gz": [str(folder / "orders.jsonl.gz")],
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, list[str]]:
    folder = tmp_path_factory.mktemp("formats")
    (folder / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    return write_all(folder, dataset()) | {"mapping": [str(folder / "mapping.toml")]}


def mapped(sources: list[str], mapping: str) -> list[tuple[str, dict]]:
    mapper = compile_mapper(load_mapping(mapping))
    out = []
    for chunk in read_chunks(expand(sources)):
        for row in chunk:
            assert row.problem is None, (row.source, row.position, row.problem)
            ident = event_id(mapper, row)
            assert isinstance(ident, str)
            event = map_row(mapper, row, ident)
            assert isinstance(event, Event), event
            out.append((ident, dict(event.input)))
    return out


def test_every_format_gives_the_same_ids_and_the_same_variables(sources):
    mapping = sources["mapping"][0]
    expected = mapped(sources["csv"], mapping)
    assert len(expected) == ROWS and len({ident for ident, _ in expected}) == ROWS
    for name in ("csv.gz", "parquet", "jsonl.gz"):
        got = mapped(sources[name], mapping)
        assert [i for i, _ in got] == [i for i, _ in expected], name
        assert got == expected, name
    # Typed values became the text a warehouse writes in CSV.
    variables = expected[7][1]
    assert variables["title"].endswith(f"of {dataset()[7]['amount']}")
    assert "paid true" in variables["components"][0]["componentText"]["text"]


def test_a_run_over_parquet_shards_then_over_the_csv_sends_nothing_twice(sources, tmp_path):
    mapping = sources["mapping"][0]
    with FakePlain(rate_limit=100_000) as fake:
        first = run(settings_for(fake, tmp_path, sources=sources["parquet"], mapping=mapping))
        again = run(settings_for(fake, tmp_path, sources=sources["jsonl.gz"], mapping=mapping))
        stats = fake.stats()
    assert first.exit_code == 0 and first.counts == {"delivered": ROWS}
    # The same rows from another format: every one already delivered, no request.
    assert again.exit_code == 0 and again.skipped_done == ROWS and again.requests == 0
    assert len(stats.creations) == ROWS and set(stats.creations.values()) == {1}
    positions = [e["externalId"] for e in stats.events]
    assert len(positions) == ROWS


def test_parquet_positions_are_row_indexes_across_row_groups(sources):
    files = expand(sources["parquet"])
    rows = [row for chunk in read_chunks(files) for row in chunk]
    assert [row.position for row in rows[:3]] == ["0", "1", "2"]
    assert rows[399].position == "399" and rows[400].position == "0"
    assert rows[400].source.endswith("part-00001.parquet")


def test_validate_and_preview_read_every_format(sources, tmp_path):
    mapping = sources["mapping"][0]
    summary = validate(
        resolve(sources=sources["jsonl.gz"], mapping=mapping, results_dir=str(tmp_path))
    )
    assert (summary.rows_read, summary.valid, summary.invalid) == (ROWS, ROWS, 0)
    shown = preview(resolve(sources=sources["parquet"], mapping=mapping), n=2)
    assert [item["line"] for item in shown] == ["0", "1"]


def test_a_parquet_file_with_another_schema_stops_the_run_before_anything_is_sent(
    sources, tmp_path
):
    shards = Path(sources["parquet"][0])
    odd = tmp_path / "odd"
    odd.mkdir()
    for path in sorted(shards.iterdir()):
        (odd / path.name).write_bytes(path.read_bytes())
    table = pq.read_table(odd / "part-00002.parquet")
    table = table.set_column(5, "quantity", table.column("quantity").cast(pa.string()))
    pq.write_table(table, odd / "part-00002.parquet")
    with FakePlain(rate_limit=100_000) as fake:
        with pytest.raises(ConfigError, match="part-00002.parquet does not match"):
            run(settings_for(fake, tmp_path, sources=[str(odd)], mapping=sources["mapping"][0]))
        assert fake.stats().requests == 0


def test_a_missing_required_column_names_the_file(sources, tmp_path):
    path = tmp_path / "no_email.jsonl"
    path.write_text('{"order_id": 1, "occurred_at": "2023-01-01T00:00:00Z"}\n', encoding="utf-8")
    with pytest.raises(Exception, match="no_email.jsonl") as caught:
        validate(
            resolve(sources=[str(path)], mapping=sources["mapping"][0], results_dir=str(tmp_path))
        )
    assert isinstance(caught.value, (SourceError, ConfigError)) or "email" in str(caught.value)
