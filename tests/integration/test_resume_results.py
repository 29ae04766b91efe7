"""What a resume reports for rows earlier runs settled: the ledger's record, row by row."""

from __future__ import annotations

import csv

import pandas as pd

from backfill import run
from backfill.fakeplain import FakePlain
from tests.conftest import SAMPLE, sample_with_bad_rows, settings_for


def frame(summary, name: str = "results.csv") -> pd.DataFrame:
    return pd.read_csv(f"{summary.results_dir}/{name}", dtype=str, keep_default_na=False)


def test_a_resume_reports_each_settled_row_as_the_first_run_left_it(tmp_path):
    source = sample_with_bad_rows(tmp_path, every=7)
    with open(SAMPLE, encoding="utf-8", newline="") as fh:
        email = list(csv.DictReader(fh))[3]["customer_email"]
    with FakePlain(rate_limit=100_000, unknown_customers=[email]) as fake:
        settings = settings_for(fake, tmp_path, sources=(source,), limit=700)
        first = run(settings)
        creations = fake.stats().creations
        again = run(settings)
        assert fake.stats().creations == creations
    before, after = frame(first), frame(again)
    assert again.requests == 0
    assert set(before["status"]) == {"delivered", "invalid", "rejected"}
    assert len(after) == len(before) == 700

    settled = after[after["note"].str.startswith("settled by run")]
    assert set(settled["note"]) == {f"settled by run {first.run_id}; not sent again"}
    # Invalid rows are mapped again from the source; the rest come from the ledger.
    assert set(settled["status"]) == {"delivered", "rejected"}
    assert (after[after["status"] == "invalid"]["note"] != settled["note"].iloc[0]).all()
    columns = ["status", "plain_event_id", "source", "position", "code", "message"]
    columns += ["event_timestamp", "attempts"]
    joined = settled.merge(before, on="external_id", suffixes=("", "_first"))
    assert len(joined) == len(settled)
    for column in columns:
        assert (joined[column] == joined[f"{column}_first"]).all(), column
    assert (settled["run_id"] == again.run_id).all()
    assert (settled[["column", "sent_at", "answered_at", "latency_ms"]] == "").all().all()

    # failed.csv holds the rejected rows again, with the same cells as results.csv.
    failed = frame(again, "failed.csv")
    rejected = after[after["status"] == "rejected"]
    assert len(rejected) >= 1
    assert list(failed.columns) == list(after.columns)
    rows = {tuple(row) for row in rejected.itertuples(index=False)}
    assert rows <= {tuple(row) for row in failed.itertuples(index=False)}
    assert again.counts == first.counts
