"""The job end to end through the library API, over real HTTP to a fake Plain."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from backfill import run
from backfill.errors import ConfigError, LedgerError
from backfill.fakeplain import FakePlain, Faults
from backfill.ledger import SqliteLedger
from tests.conftest import MAPPING, SAMPLE, SAMPLE_ROWS, sample_ids, settings_for


def results_of(summary) -> pd.DataFrame:
    return pd.read_csv(f"{summary.results_dir}/results.csv", dtype=str, keep_default_na=False)


def test_every_sample_row_is_delivered_once_and_a_rerun_sends_nothing(fake_plain, tmp_path):
    settings = settings_for(fake_plain, tmp_path)
    first = run(settings)
    assert first.exit_code == 0
    assert first.counts == {"delivered": SAMPLE_ROWS}
    stats = fake_plain.stats()
    assert set(stats.creations) == sample_ids()
    assert set(stats.creations.values()) == {1}
    assert stats.by_operation == {
        "myWorkspace": 1,
        "myPermissions": 1,
        "createCustomerEvent": SAMPLE_ROWS,
    }

    frame = results_of(first)
    assert len(frame) == SAMPLE_ROWS
    assert set(frame["status"]) == {"delivered"}
    assert frame["plain_event_id"].str.startswith("tev_").all()
    created = {e["externalId"]: e for e in stats.events}
    one = frame.iloc[0]
    assert created[one["external_id"]]["timestamp"] == one["event_timestamp"]

    second = run(settings)
    assert second.exit_code == 0
    assert fake_plain.stats().requests == stats.requests  # not even the preflight
    assert second.skipped_done == SAMPLE_ROWS and second.requests == 0
    summary = json.loads((tmp_path / "results" / second.run_id / "summary.json").read_text())
    assert summary["counts"] == {"delivered": SAMPLE_ROWS}


def test_a_429_storm_waits_for_the_window_and_delivers_everything(tmp_path):
    with FakePlain(rate_limit=25, window_s=1.0) as fake:
        settings = settings_for(fake, tmp_path, rate="500/s", concurrency=4, limit=100)
        summary = run(settings)
        stats = fake.stats()
    assert summary.exit_code == 0 and summary.counts == {"delivered": 100}
    assert set(stats.creations.values()) == {1} and len(stats.creations) == 100
    # An answer saying the window is spent holds every sender until the reset, so only
    # requests already in flight can meet a 429: at most one per sender per window.
    windows = 100 // 25 + 1
    assert stats.rate_limited <= 4 * windows
    # 100 accepted at 25 per 1 s window need at least 3 window resets.
    assert summary.elapsed_s >= 3.0


def test_500s_and_dropped_connections_are_retried_and_nothing_is_created_twice(tmp_path):
    faults = Faults(error_500=0.1, drop=0.05, applied_then_drop=0.05, seed=7)
    with FakePlain(rate_limit=100_000, faults=faults) as fake:
        settings = settings_for(fake, tmp_path, limit=300, max_retries=12)
        summary = run(settings)
        stats = fake.stats()
    assert summary.exit_code == 0
    assert stats.errors_500 > 0 and stats.drops > 0 and stats.applied_then_drops > 0
    assert set(stats.creations.values()) == {1} and len(stats.creations) == 300
    counts = summary.counts
    assert counts.get("delivered", 0) + counts.get("already_existed", 0) == 300
    # Each request applied before its connection dropped comes back as already_existed.
    assert 1 <= counts.get("already_existed", 0) <= stats.applied_then_drops
    with SqliteLedger.open(settings.ledger.location) as ledger:
        retried = ledger.query("SELECT COUNT(*) FROM attempts WHERE outcome = 'transient'")[0][0]
    assert retried == stats.errors_500 + stats.drops + stats.applied_then_drops


def test_ragged_rows_are_invalid_with_their_line_and_the_rest_is_delivered(fake_plain, tmp_path):
    with open(SAMPLE, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:41]
    path = tmp_path / "ragged.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body[:10])
        fh.write("short,row\n")
        writer.writerows(body[10:20])
        writer.writerow([*body[20], "extra"])
        writer.writerows(body[21:])
    summary = run(settings_for(fake_plain, tmp_path, sources=(str(path),)))
    assert summary.exit_code == 1
    assert summary.counts == {"delivered": 39, "invalid": 2}
    frame = results_of(summary)
    invalid = frame[frame["status"] == "invalid"].sort_values("message")
    assert list(invalid["message"]) == [
        "expected 11 fields, found 12",
        "expected 11 fields, found 2",
    ]
    lines = path.read_text(encoding="utf-8").split("\n")
    short_line = lines.index("short,row") + 1
    long_line = next(i for i, line in enumerate(lines, 1) if line.startswith(body[20][0] + ","))
    assert sorted(invalid["position"].astype(int)) == sorted([short_line, long_line])
    failed = pd.read_csv(f"{summary.results_dir}/failed.csv", dtype=str, keep_default_na=False)
    assert sorted(failed["position"]) == sorted(invalid["position"])
    assert fake_plain.stats().by_operation["createCustomerEvent"] == 39


def test_a_duplicate_key_in_the_source_is_reported_and_never_sent(fake_plain, tmp_path):
    with open(SAMPLE, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    path = tmp_path / "dupes.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerows([rows[0], *rows[1:6], rows[2], rows[3]])
    summary = run(settings_for(fake_plain, tmp_path, sources=(str(path),), chunk_rows=3))
    assert summary.exit_code == 0
    assert summary.counts == {"delivered": 5, "duplicate_in_source": 2}
    assert fake_plain.stats().by_operation["createCustomerEvent"] == 5
    again = run(settings_for(fake_plain, tmp_path, sources=(str(path),)))
    assert again.counts == {"delivered": 5, "duplicate_in_source": 2} and again.requests == 0


def test_a_mapping_change_after_delivery_sends_nothing_and_counts_changed_payloads(
    fake_plain, tmp_path
):
    run(settings_for(fake_plain, tmp_path, limit=50))
    changed = tmp_path / "mapping.toml"
    text = Path(MAPPING).read_text(encoding="utf-8")
    changed.write_text(text.replace('label = "Open in admin"', 'label = "Open"'), encoding="utf-8")
    before = fake_plain.stats().requests
    summary = run(settings_for(fake_plain, tmp_path, limit=50, mapping=str(changed)))
    assert fake_plain.stats().requests == before
    with_url = sum(
        1
        for e in fake_plain.stats().events
        if any("componentLinkButton" in c for c in e["components"])
    )
    assert summary.changed_payloads == with_url > 0
    assert summary.skipped_done == 50


def test_a_different_id_rule_is_refused_unless_allowed(fake_plain, tmp_path):
    run(settings_for(fake_plain, tmp_path, limit=5))
    other = tmp_path / "mapping.toml"
    text = Path(MAPPING).read_text(encoding="utf-8")
    other.write_text(
        text.replace('namespace = "acme-activity"', 'namespace = "acme-2"'), encoding="utf-8"
    )
    with pytest.raises(LedgerError, match="another externalId rule"):
        run(settings_for(fake_plain, tmp_path, limit=5, mapping=str(other)))
    summary = run(
        settings_for(fake_plain, tmp_path, limit=5, mapping=str(other), allow_id_change=True)
    )
    assert summary.counts == {"delivered": 5} and summary.requests == 6


def test_an_unknown_customer_is_rejected_with_plains_code(tmp_path):
    with open(SAMPLE, encoding="utf-8", newline="") as fh:
        email = list(csv.DictReader(fh))[0]["customer_email"]
    with FakePlain(rate_limit=100_000, unknown_customers=[email]) as fake:
        summary = run(settings_for(fake, tmp_path, limit=200))
        again = run(settings_for(fake, tmp_path, limit=200))
    assert summary.exit_code == 1
    frame = results_of(summary)
    rejected = frame[frame["status"] == "rejected"]
    assert len(rejected) >= 1 and set(rejected["code"]) == {"not_found"}
    # A re-run keeps rejected rows, reports them and sends nothing.
    assert again.requests == 0 and again.counts.get("rejected") == len(rejected)


def test_progress_reports_an_estimate_of_the_rows_and_an_eta(fake_plain, tmp_path):
    seen = []
    notices = []
    run(settings_for(fake_plain, tmp_path), progress=seen.append, notice=notices.append)
    assert seen[-1].settled == SAMPLE_ROWS and seen[-1].delivered == SAMPLE_ROWS
    estimates = [p.estimated_rows for p in seen if p.estimated_rows is not None]
    assert estimates and all(abs(e - SAMPLE_ROWS) <= SAMPLE_ROWS * 0.15 for e in estimates)
    assert any(p.eta_s is not None and p.eta_s > 0 for p in seen)
    assert any("ledger" in n and str(tmp_path) in n for n in notices)
    assert any("writing to workspace 'Fake Workspace'" in n for n in notices)


def test_a_key_revoked_mid_run_stops_at_once_and_marks_nothing_rejected(tmp_path):
    with FakePlain(rate_limit=100_000) as fake:

        def revoke_after_100(progress):
            if progress.delivered >= 100:
                fake.revoke("test-key")

        settings = settings_for(fake, tmp_path, rate="200/s", concurrency=4)
        summary = run(settings, progress=revoke_after_100)
        stats = fake.stats()
    assert summary.exit_code == 4
    assert "refused" in summary.message
    assert summary.counts.get("rejected", 0) == 0
    # The run stopped: the 401s are at most one per sender.
    assert 1 <= stats.unauthenticated <= 4
    assert summary.counts["delivered"] < 200
    with SqliteLedger.open(settings.ledger.location) as ledger:
        counts = ledger.status_counts()
    assert "rejected" not in counts
    assert counts["delivered"] == len(stats.creations)


def test_an_unwritable_results_dir_stops_before_anything_is_sent(fake_plain, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot write results"):
        run(settings_for(fake_plain, tmp_path, results_dir=str(blocker)))
    assert fake_plain.stats().requests == 0


def test_rows_that_outlast_their_retries_are_retryable_and_the_next_run_sends_them(tmp_path):
    # Scattered 500s, no retries: a row whose failure Plain answered around gives up.
    with FakePlain(rate_limit=100_000, faults=Faults(error_500=0.25, seed=5)) as fake:
        first = run(settings_for(fake, tmp_path, limit=40, max_retries=0, concurrency=4))
        assert first.exit_code == 1
        assert first.counts.get("retryable", 0) >= 1
        retryable = first.counts["retryable"]
        fake.faults = Faults()
        failed = pd.read_csv(f"{first.results_dir}/failed.csv", dtype=str, keep_default_na=False)
        assert set(failed["status"]) == {"retryable"} and set(failed["code"]) == {"HTTP_500"}
        second = run(settings_for(fake, tmp_path, limit=40))
        stats = fake.stats()
    assert second.exit_code == 0
    assert second.requests == retryable + 1  # the preflight and the retryable rows only
    assert set(second.counts) <= {"delivered", "already_existed"}
    assert second.skipped_done == 40 - retryable
    assert len(stats.creations) == 40 and set(stats.creations.values()) == {1}
