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
