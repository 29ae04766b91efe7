import csv

import pandas as pd
import pytest

from backfill.models import RESULT_COLUMNS, ResultRow
from backfill.reports import ResultsWriter, iso, neutralise


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+1", "'+1"),
        ("-x", "'-x"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_neutralise(text, expected):
    assert neutralise(text) == expected


def test_results_neutralise_free_text_but_never_ids_or_numbers(tmp_path):
    writer = ResultsWriter(tmp_path)
    writer.write(
        ResultRow(
            run_id="r",
            external_id="-ns_1",
            status="invalid",
            message="=cmd()",
            position="12",
            attempts=0,
        )
    )
    writer.write(
        ResultRow(
            run_id="r",
            external_id="ns_2",
            status="delivered",
            plain_event_id="tev_1",
            attempts=1,
            latency_ms=12.5,
        )
    )
    writer.close()
    rows = read(tmp_path / "results.csv")
    assert rows[0]["message"] == "'=cmd()"
    assert rows[0]["external_id"] == "-ns_1"
    failed = read(tmp_path / "failed.csv")
    assert [r["external_id"] for r in failed] == ["-ns_1"]
    frame = pd.read_csv(tmp_path / "results.csv")
    assert list(frame.columns) == list(RESULT_COLUMNS)


def read(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_iso():
    assert iso(0) == ""
    assert iso(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
