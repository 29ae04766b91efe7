"""Bad values never crash or hang the job: each bad row is invalid with file, line and reason."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from backfill import run
from backfill.errors import MappingError
from tests.conftest import MAPPING, SAMPLE, settings_for

HEADER = ["event_id", "occurred_at", "customer_email", "customer_name", "event_type", "plan"]
HEADER += ["amount", "currency", "url", "description", "actor"]


def good(n: int) -> list[str]:
    return [
        f"evt_{n}",
        "2024-05-01T10:00:00Z",
        "a@acme.example",
        "A",
        "login",
        "",
        "",
        "",
        "",
        "ok",
        "",
    ]


BAD_VALUES = {
    "year-one-with-offset": (
        {"occurred_at": "0001-01-01T00:00:00+01:00"},
        "bad_timestamp",
        "occurred_at",
    ),
    "not-a-timestamp": ({"occurred_at": "yesterday"}, "bad_timestamp", "occurred_at"),
    "broken-ipv6-url": ({"url": "http://[oops"}, "bad_url", "url"),
    "port-out-of-range": ({"url": "https://acme.example:99999/x"}, "bad_url", "url"),
    "javascript-url": ({"url": "javascript:alert(1)"}, "bad_url", "url"),
    "empty-key": ({"event_id": ""}, "bad_key", "event_id"),
    "no-customer": ({"customer_email": ""}, "missing_customer", "customer_email"),
    "text-too-long": ({"description": "x" * 10_001}, "too_long", "description"),
    "label-too-long": ({"plan": "p" * 501}, "too_long", "plan"),
}


def test_bad_values_make_their_rows_invalid_and_the_rest_is_delivered(fake_plain, tmp_path):
    path = tmp_path / "bad.csv"
    expected = {}
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        line = 2
        for n, (name, (changes, code, column)) in enumerate(BAD_VALUES.items()):
            writer.writerow(good(1000 + n))
            row = dict(zip(HEADER, good(n), strict=True)) | changes
            writer.writerow(row.values())
            expected[str(line + 1)] = (name, code, column)
            line += 2
        writer.writerow(good(2000))
    summary = run(settings_for(fake_plain, tmp_path, sources=(str(path),)))
    assert summary.exit_code == 1
    assert summary.counts == {"delivered": len(BAD_VALUES) + 1, "invalid": len(BAD_VALUES)}
    frame = pd.read_csv(f"{summary.results_dir}/failed.csv", dtype=str, keep_default_na=False)
    got = {r.position: (r.code, r.column) for r in frame.itertuples()}
    assert got == {line: (code, column) for line, (_, code, column) in expected.items()}
    assert (frame["source"] == str(path)).all()


def test_broken_csv_structure_is_reported_per_record_and_the_run_ends(fake_plain, tmp_path):
    rows = [",".join(good(n)) for n in range(3)]
    path = tmp_path / "broken.csv"
    path.write_bytes(
        (
            ",".join(HEADER)
            + "\n"
            + rows[0]
            + "\n"
            + 'evt_x,"2024-05-01T10:00:00Z"junk,a@acme.example,A,login,,,,,x,\n'
            + rows[1]
            + "\n"
            + "evt_nul,2024-05-01T10:00:00Z,a@acme.example,A,login,,,,,nul\x00byte,\n"
            + "evt_bad,2024-05-01T10:00:00Z,a@acme.example,A,login,,,,,"
        ).encode()
        + b"\xff\xfe bad bytes,\n"
        + (
            rows[2]
            + "\n"
            + 'evt_open,2024-05-01T10:00:00Z,a@acme.example,A,login,,,,,"never closed,\n'
            + "evt_lost,x\n"
        ).encode()
    )
    summary = run(settings_for(fake_plain, tmp_path, sources=(str(path),)))
    assert summary.exit_code == 1
    assert summary.counts == {"delivered": 3, "invalid": 4}
    frame = pd.read_csv(f"{summary.results_dir}/failed.csv", dtype=str, keep_default_na=False)
    assert dict(zip(frame["position"], frame["code"], strict=True)) == {
        "3": "bad_quoting",
        "5": "encoding",
        "6": "encoding",
        "8": "unclosed_quote",
    }
    assert "lines 8 to 9" in frame.set_index("position").loc["8", "message"]


def test_a_misspelt_row_lookup_fails_before_anything_is_sent(fake_plain, tmp_path):
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        Path(MAPPING)
        .read_text(encoding="utf-8")
        .replace("{{ description }}", "{{ row['descripton'] }}"),
        encoding="utf-8",
    )
    with pytest.raises(
        MappingError, match="unknown column 'descripton'.*did you mean 'description'"
    ):
        run(settings_for(fake_plain, tmp_path, mapping=str(mapping), sources=(SAMPLE,)))
    assert fake_plain.stats().requests == 0


# --- JSON Lines, Parquet, compressed files ------------------------------------------------


def record(n: int, **changes: str) -> dict[str, str]:
    return dict(zip(HEADER, good(n), strict=True)) | changes


def test_json_lines_with_broken_lines_deliver_the_rest_and_name_each_line(fake_plain, tmp_path):
    import json

    path = tmp_path / "events.jsonl"
    lines = [json.dumps(record(1)), "{not json", json.dumps(record(2)), "[1, 2]"]
    lines += [json.dumps(record(3, description="x" * 5_000_000))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = run(settings_for(fake_plain, tmp_path, sources=(str(path),)))
    assert summary.exit_code == 1
    assert summary.counts == {"delivered": 2, "invalid": 3}
    failed = pd.read_csv(Path(summary.results_dir) / "failed.csv", dtype=str).fillna("")
    by_line = dict(zip(failed["position"], failed["code"], strict=True))
    assert by_line == {"2": "json", "4": "json", "5": "too_long"}
    assert set(failed["source"]) == {str(path)}


def test_an_empty_json_lines_file_stops_before_anything_is_sent(fake_plain, tmp_path):
    from backfill.errors import SourceError

    (tmp_path / "a.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(SourceError, match=r"a\.jsonl: the file is empty"):
        run(settings_for(fake_plain, tmp_path, sources=(str(tmp_path / "a.jsonl"),)))
    assert fake_plain.stats().requests == 0


def test_a_header_only_file_among_shards_is_no_rows_not_an_error(fake_plain, tmp_path):
    shards = tmp_path / "unload"
    shards.mkdir()
    (shards / "part-0.csv").write_text(",".join(HEADER) + "\n", encoding="utf-8")
    with open(shards / "part-1.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(good(n) for n in range(5))
    summary = run(settings_for(fake_plain, tmp_path, sources=(str(shards),)))
    assert summary.exit_code == 0 and summary.counts == {"delivered": 5}


def test_a_parquet_value_python_cannot_hold_makes_only_its_row_invalid(fake_plain, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [record(n) for n in range(3)]
    table = pa.Table.from_pylist(rows)
    # Days since 1970 beyond year 9999 in a date column: Python's date cannot hold it.
    dates = pa.array([0, 10**7, 1], pa.date32())
    table = table.append_column("valid_from", dates)
    pq.write_table(table, tmp_path / "events.parquet")
    summary = run(settings_for(fake_plain, tmp_path, sources=(str(tmp_path / "events.parquet"),)))
    assert summary.counts == {"delivered": 2, "invalid": 1}
    failed = pd.read_csv(Path(summary.results_dir) / "failed.csv", dtype=str)
    assert list(failed["position"]) == ["1"] and list(failed["column"]) == ["valid_from"]
