"""`backfill status` and `backfill export` on a ledger holding every status."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from backfill.fakeplain import FakePlain, Faults
from backfill.models import RESULT_COLUMNS
from tests.conftest import MAPPING, SAMPLE, clean_env, cli

ENV = clean_env(PLAIN_API_KEY="test-key")
ROWS = 200


def _source(folder: Path) -> tuple[Path, str]:
    """200 sample rows, every 40th with a bad timestamp, the 3rd repeated at the end, in a
    file whose name a spreadsheet would run as a formula."""
    path = folder / "=2+3.csv"
    with (
        open(SAMPLE, encoding="utf-8", newline="") as src,
        open(path, "w", encoding="utf-8", newline="") as out,
    ):
        reader = csv.DictReader(src)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        rows = [row for _, row in zip(range(ROWS), reader, strict=False)]
        for n, row in enumerate(rows):
            if n % 40 == 39:
                row["occurred_at"] = "not a time"
            writer.writerow(row)
        writer.writerow(rows[2])
    return path, rows[0]["customer_email"]


def _run(fake: FakePlain, folder: Path, *extra: str):
    return cli(
        "run",
        "=2+3.csv",
        "--mapping",
        MAPPING,
        "--api-url",
        fake.url,
        "--ledger",
        "ledger.sqlite",
        "--results-dir",
        "results",
        "--rate",
        "200/s",
        *extra,
        env=ENV,
        cwd=folder,
    )


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A ledger with every status: delivered, already_existed, rejected, retryable,
    in_flight, invalid and duplicate_in_source."""
    folder = tmp_path_factory.mktemp("job")
    _, email = _source(folder)
    with FakePlain(rate_limit=100_000, unknown_customers=[email]) as fake:
        first = _run(fake, folder)
        assert first.returncode == 1, first.stderr
        ledger = folder / "ledger.sqlite"
        with sqlite3.connect(ledger) as db:
            # Two delivered rows the ledger lost: sent again, one answered already_existed,
            # the other refused with a 500 (no retries): retryable.
            lost = [
                i
                for (i,) in db.execute(
                    "SELECT external_id FROM events WHERE status = 'delivered'"
                    " ORDER BY CAST(position AS INTEGER) LIMIT 2"
                )
            ]
            db.execute("DELETE FROM events WHERE external_id IN (?, ?)", lost)
        fake.faults = Faults(fail_next=1)
        second = _run(fake, folder, "--max-retries", "0", "--concurrency", "1")
        assert second.returncode == 1, second.stderr
    with sqlite3.connect(ledger) as db:
        # A row sent when the process died: its answer never recorded.
        db.execute(
            "UPDATE events SET status = 'in_flight' WHERE external_id = (SELECT external_id"
            " FROM events WHERE status = 'delivered' ORDER BY external_id LIMIT 1)"
        )
    return folder


def test_status_counts_every_status_and_names_the_top_error_codes(job):
    shown = cli("status", "--ledger", "ledger.sqlite", "--json", env=ENV, cwd=job)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    counts = status["counts"]
    assert set(counts) == {
        "delivered",
        "already_existed",
        "rejected",
        "retryable",
        "in_flight",
        "invalid",
        "duplicate_in_source",
    }
    assert counts["invalid"] == ROWS // 40 and counts["duplicate_in_source"] == 1
    assert counts["already_existed"] == counts["retryable"] == counts["in_flight"] == 1
    assert sum(counts.values()) == ROWS + 1  # one per source row
    codes = {c["code"]: c for c in status["codes"]}
    assert codes["not_found"]["rows"] == counts["rejected"]
    assert "Customer not found" in codes["not_found"]["sample"]
    assert codes["bad_timestamp"]["rows"] == ROWS // 40
    assert status["left"] == 2  # the retryable and the in_flight row
    assert status["runs"][0]["delivered"] >= 0 and len(status["runs"]) == 2
    text = cli("status", "--ledger", "ledger.sqlite", env=ENV, cwd=job).stdout
    assert "not_found" in text and "ETA" in text and "already_existed" in text


def test_export_writes_one_row_per_source_row_readable_by_pandas(job, tmp_path):
    done = cli("export", "--ledger", "ledger.sqlite", "--out", str(tmp_path), env=ENV, cwd=job)
    assert done.returncode == 0, done.stderr
    results = pd.read_csv(tmp_path / "results.csv")
    failed = pd.read_csv(tmp_path / "failed.csv")
    assert list(results.columns) == list(RESULT_COLUMNS)
    assert len(results) == ROWS + 1
    assert set(failed["status"]) == {"invalid", "rejected", "retryable"}
    assert len(failed) == sum(results["status"].isin(["invalid", "rejected", "retryable"]))
    with sqlite3.connect(job / "ledger.sqlite") as db:
        ledger = {
            row[0]: row[1:]
            for row in db.execute(
                "SELECT external_id, plain_event_id, position, attempts FROM events"
            )
        }
    events = results[results["status"] != "duplicate_in_source"]
    events = events[events["external_id"].isin(ledger)]
    assert len(events) == len(ledger)
    # Ids and numbers are never altered.
    for row in events.itertuples():
        event_id, position, attempts = ledger[row.external_id]
        assert (row.position, row.attempts) == (int(position), attempts)
        assert (row.plain_event_id if isinstance(row.plain_event_id, str) else None) == event_id


def test_export_neutralises_cells_a_spreadsheet_would_run(job, tmp_path):
    cli("export", "--ledger", "ledger.sqlite", "--out", str(tmp_path), env=ENV, cwd=job)
    with open(tmp_path / "results.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {row["source"] for row in rows} == {"'=2+3.csv"}
    for row in rows:
        for name in RESULT_COLUMNS:
            assert not row[name].startswith(("=", "+", "@", "\t", "\r")), (name, row[name])


def test_export_filters_by_status(job, tmp_path):
    done = cli(
        "export",
        "--ledger",
        "ledger.sqlite",
        "--out",
        str(tmp_path),
        "--status",
        "rejected",
        "--status",
        "in_flight",
        env=ENV,
        cwd=job,
    )
    assert done.returncode == 0, done.stderr
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results["status"]) == {"rejected", "in_flight"}
    bad = cli("export", "--ledger", "ledger.sqlite", "--status", "lost", env=ENV, cwd=job)
    assert bad.returncode == 2 and "a status is one of" in bad.stderr


def test_with_the_sources_status_and_export_tell_what_is_left_and_what_changed(job, tmp_path):
    mapping = tmp_path / "mapping.toml"
    text = Path(MAPPING).read_text(encoding="utf-8")
    mapping.write_text(text.replace("| capitalize }}", "| upper }}"), encoding="utf-8")
    args = ["=2+3.csv", "--mapping", str(mapping), "--ledger", "ledger.sqlite"]
    status = json.loads(cli("status", *args, "--json", "--rate", "60/min", env=ENV, cwd=job).stdout)
    pending = status["pending"]
    with sqlite3.connect(job / "ledger.sqlite") as db:
        done = db.execute(
            "SELECT COUNT(*) FROM events WHERE status IN ('delivered', 'already_existed')"
        ).fetchone()[0]
    assert pending["to_send"] == 2 and pending["new"] == 0
    assert pending["changed"] == done  # every title now upper case
    assert status["eta_s"] == pytest.approx(2.0)
    out = tmp_path / "export"
    exported = cli("export", *args, "--out", str(out), env=ENV, cwd=job)
    assert exported.returncode == 0, exported.stderr
    left = pd.read_csv(out / "left.csv")
    changed = pd.read_csv(out / "changed.csv")
    assert set(left["status"]) == {"retryable", "in_flight"}
    assert len(changed) == done and set(changed["status"]) <= {"delivered", "already_existed"}
    # With the mapping it was sent with, nothing changed.
    same = json.loads(
        cli(
            "status",
            "=2+3.csv",
            "-m",
            MAPPING,
            "--ledger",
            "ledger.sqlite",
            "--json",
            env=ENV,
            cwd=job,
        ).stdout
    )
    assert same["pending"]["changed"] == 0 and same["pending"]["to_send"] == 2


def test_export_merges_the_runs_of_a_jobs_shards(fake_plain, tmp_path):
    shutil.copy(SAMPLE, tmp_path / "a.csv")
    for shard in ("0/2", "1/2"):
        done = cli(
            "run",
            "a.csv",
            "-m",
            MAPPING,
            "--api-url",
            fake_plain.url,
            "--ledger",
            "l.sqlite",
            "--rate",
            "2000/s",
            "--limit",
            "300",
            "--shard",
            shard,
            env=ENV,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
    cli("export", "--ledger", "l.sqlite", "--out", "merged", env=ENV, cwd=tmp_path)
    merged = pd.read_csv(tmp_path / "merged" / "results.csv")
    shards = [pd.read_csv(p) for p in sorted((tmp_path / "results").glob("*/results.csv"))]
    assert len(shards) == 2 and len(merged) == 300 == sum(len(s) for s in shards)
    assert set(merged["run_id"]) == {s["run_id"].iloc[0] for s in shards}
    assert set(merged["external_id"]) == set(pd.concat(shards)["external_id"])


def test_a_missing_ledger_is_a_clear_error(tmp_path):
    done = cli("status", "--ledger", str(tmp_path / "none.sqlite"), env=ENV)
    assert done.returncode == 2 and "no ledger at" in done.stderr
    done = cli("export", env=ENV, cwd=tmp_path)
    assert done.returncode == 2 and "--ledger" in done.stderr


def test_status_takes_auto_as_the_measured_pace_and_refuses_options_without_sources(job):
    auto = cli("status", "--ledger", "ledger.sqlite", "--rate", "auto", "--json", env=ENV, cwd=job)
    assert auto.returncode == 0, auto.stderr
    assert "measured" in json.loads(auto.stdout)["rate_from"]
    bad = cli("status", "--ledger", "ledger.sqlite", "--rate", "fast", env=ENV, cwd=job)
    assert bad.returncode == 2 and "--rate" in bad.stderr and "Traceback" not in bad.stderr
    for option in (["--shard", "1/2"], ["--since", "2024-01-01"], ["--source-url", "sqlite://"]):
        refused = cli("status", "--ledger", "ledger.sqlite", *option, env=ENV, cwd=job)
        assert refused.returncode == 2 and "pick rows of the sources" in refused.stderr
    missing = cli("export", "--ledger", "sqlite:///nowhere.sqlite", env=ENV, cwd=job)
    assert missing.returncode == 2 and "no ledger at nowhere.sqlite" in missing.stderr


def test_a_row_found_invalid_after_a_failed_send_counts_once_as_invalid(fake_plain, tmp_path):
    from backfill.pipeline import run
    from tests.conftest import settings_for

    source = tmp_path / "a.csv"
    shutil.copy(SAMPLE, source)
    fake_plain.faults = Faults(fail_next=3)
    first = run(
        settings_for(
            fake_plain, tmp_path, sources=(str(source),), limit=50, max_retries=0, concurrency=1
        )
    )
    failed = first.counts["retryable"]
    assert failed >= 1
    # The source is fixed upstream... and those rows now have a broken timestamp.
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        lines = {
            int(p) for (p,) in db.execute("SELECT position FROM events WHERE status = 'retryable'")
        }
    text = source.read_text(encoding="utf-8").splitlines(keepends=True)
    for line in lines:
        fields = text[line - 1].split(",")
        fields[1] = "not a time"
        text[line - 1] = ",".join(fields)
    source.write_text("".join(text), encoding="utf-8")
    second = run(settings_for(fake_plain, tmp_path, sources=(str(source),), limit=50))
    assert second.counts.get("invalid") == failed
    status = json.loads(cli("status", "--ledger", str(tmp_path / "ledger.sqlite"), "--json").stdout)
    assert status["counts"] == {"delivered": 50 - failed, "invalid": failed}
    assert status["left"] == 0
    cli("export", "--ledger", str(tmp_path / "ledger.sqlite"), "--out", str(tmp_path / "x"))
    exported = pd.read_csv(tmp_path / "x" / "results.csv")
    assert len(exported) == 50 and exported["position"].is_unique


def test_export_pages_give_the_same_rows_whatever_their_size(job, tmp_path, monkeypatch):
    from backfill import job_export as export

    whole = export.export_results(str(job / "ledger.sqlite"), str(tmp_path / "whole"))
    monkeypatch.setattr(export, "PAGE", 2)
    paged = export.export_results(str(job / "ledger.sqlite"), str(tmp_path / "paged"))
    assert paged.by_status == whole.by_status and paged.rows == ROWS + 1
    for name in ("results.csv", "failed.csv"):
        assert (tmp_path / "paged" / name).read_text() == (tmp_path / "whole" / name).read_text()
