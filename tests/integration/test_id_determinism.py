"""The same rows give the same externalIds whatever the row order and chunk size."""

from __future__ import annotations

import csv
import random
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backfill.ledger import SqliteLedger
from backfill.mapper import compile_mapper, event_id
from backfill.mapping import parse_mapping
from backfill.readers import read_chunks

MAPPER = compile_mapper(
    parse_mapping(
        {
            "title": "{{ kind }}",
            "customer": {"email": "email"},
            "timestamp": {"column": "at"},
            "external_id": {
                "namespace": "ns",
                "key": [
                    {"column": "account", "type": "int"},
                    {"column": "at", "type": "timestamp"},
                    {"column": "note", "type": "string"},
                ],
            },
        },
        file="m.toml",
    )
)

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=20,
)
offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda d: d.replace(tzinfo=UTC)
)
records = st.lists(
    st.tuples(st.integers(min_value=0, max_value=10**20), instants, text, offsets),
    min_size=1,
    max_size=40,
)


def write_csv(path: Path, rows, *, padding: int, shifted: bool) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["account", "at", "note", "kind", "email"])
        for account, at, note, offset in rows:
            when = at.astimezone(offset) if shifted else at
            writer.writerow([f"{account:0{padding}d}", when.isoformat(), note, "k", "a@b.example"])


def ids_by_key(path: Path, chunk_rows: int) -> dict[tuple[int, datetime, str], str]:
    found = {}
    for chunk in read_chunks([str(path)], chunk_rows=chunk_rows):
        for row in chunk:
            ident = event_id(MAPPER, row)
            assert isinstance(ident, str), ident
            at = datetime.fromisoformat(row.values["at"]).astimezone(UTC)
            found[(int(row.values["account"]), at, row.values["note"])] = ident
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.integers(min_value=1, max_value=50), st.integers(min_value=0, max_value=2**32))
def test_ids_do_not_depend_on_order_chunking_padding_or_utc_offset(rows, chunk_rows, seed):
    with tempfile.TemporaryDirectory() as tmp:
        one, two = Path(tmp) / "one.csv", Path(tmp) / "two.csv"
        write_csv(one, rows, padding=1, shifted=False)
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        write_csv(two, shuffled, padding=25, shifted=True)
        assert ids_by_key(one, chunk_rows=1000) == ids_by_key(two, chunk_rows=chunk_rows)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=80),
    st.integers(min_value=1, max_value=20),
)
def test_duplicates_are_found_across_any_chunking(keys, chunk_rows):
    with tempfile.TemporaryDirectory() as tmp:
        ledger = SqliteLedger.open(str(Path(tmp) / "l.sqlite"))
        repeats = 0
        for start in range(0, len(keys), chunk_rows):
            chunk = [
                (f"id{k}", "f", str(start + i))
                for i, k in enumerate(keys[start : start + chunk_rows])
            ]
            first = ledger.first_seen(chunk)
            repeats += sum(1 for ext, src, pos in chunk if first.get(ext, (src, pos)) != (src, pos))
        ledger.close()
    assert repeats == len(keys) - len(set(keys))
