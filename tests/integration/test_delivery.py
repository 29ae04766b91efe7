"""Delivery under pressure, over real HTTP: several events per request, faults, outages, limits."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from backfill import run
from backfill.fakeplain import FakePlain, Faults
from tests.conftest import SAMPLE_ROWS, sample_ids, sample_with_bad_rows, settings_for


def ledger_counts(tmp_path: Path) -> dict[str, int]:
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        return dict(db.execute("select status, count(*) from events group by status").fetchall())


def assert_exactly_once(fake: FakePlain, ids: set[str] | None = None) -> None:
    stats = fake.stats()
    assert set(stats.creations) == (ids if ids is not None else sample_ids())
    assert set(stats.creations.values()) == {1}


# --- several events per request -------------------------------------------------------


def test_k_events_per_request_deliver_every_row_in_a_k_th_of_the_requests(tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        summary = run(settings_for(fake, tmp_path, events_per_request=25, concurrency=4))
        stats = fake.stats()
    assert summary.exit_code == 0 and summary.counts == {"delivered": SAMPLE_ROWS}
    assert stats.mutations == SAMPLE_ROWS and stats.max_mutations_in_request == 25
    # Requests fill up: far fewer than one per event (the preflight is one of them).
    assert stats.requests < SAMPLE_ROWS / 25 * 1.5 + 1
    assert summary.requests == stats.requests
    assert summary.events_per_request_used == 25 and summary.fallbacks == ()
    assert_exactly_once(fake)
    assert ledger_counts(tmp_path) == {"delivered": SAMPLE_ROWS}


def test_a_server_refusing_large_documents_makes_the_run_fall_back_and_say_so(tmp_path):
    with FakePlain(rate_limit=100_000, max_mutations=10) as fake:
        summary = run(settings_for(fake, tmp_path, events_per_request=25, limit=500))
        stats = fake.stats()
    assert summary.exit_code == 0 and summary.counts == {"delivered": 500}
    assert summary.events_per_request == 25 and summary.events_per_request_used == 6
    assert len(summary.fallbacks) == 2 and "at most 12 per request" in summary.fallbacks[0]
    # Only requests already formed when a refusal came back are refused again.
    assert 1 <= stats.refused_documents <= 3 * 8
    assert len(stats.creations) == 500 and set(stats.creations.values()) == {1}
    summary_json = (Path(summary.results_dir) / "summary.json").read_text("utf-8")
    assert '"events_per_request_used": 6' in summary_json


def test_a_server_refusing_every_multi_event_document_falls_back_to_one(tmp_path):
    with FakePlain(rate_limit=100_000, max_mutations=1) as fake:
        summary = run(settings_for(fake, tmp_path, events_per_request=4, limit=200))
    assert summary.exit_code == 0 and summary.counts == {"delivered": 200}
    assert summary.events_per_request_used == 1


def test_events_already_in_plain_among_k_are_already_existed_and_the_rest_delivered(tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        # Another ledger delivered the first 100 rows: this run's ledger knows nothing of them.
        first = run(settings_for(fake, tmp_path / "other", limit=100))
        assert first.exit_code == 0
        summary = run(settings_for(fake, tmp_path, events_per_request=10, limit=300))
    assert summary.exit_code == 0
    assert summary.counts == {"already_existed": 100, "delivered": 200}
    assert_exactly_once(fake, set(list(fake.stats().creations)[:300]))


@pytest.mark.timing
def test_requests_with_k_events_are_paced_as_requests(tmp_path):
    # 30 requests a second, 10 events each: 600 events need about 2 s, never a 429.
    with FakePlain(rate_limit=30, window_s=1.0) as fake:
        started = time.monotonic()
        summary = run(settings_for(fake, tmp_path, events_per_request=10, limit=600, rate="30/s"))
        elapsed = time.monotonic() - started
        stats = fake.stats()
    assert summary.exit_code == 0 and stats.rate_limited == 0
    assert 1.5 <= elapsed <= 15


# --- faults and outages ---------------------------------------------------------------


def outage_after(fake: FakePlain, creations: int, seconds: float) -> threading.Thread:
    """Start an outage of `seconds` once the server has created `creations` events."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while len(fake.stats().creations) < creations and time.monotonic() < deadline:
            time.sleep(0.02)
        faults = fake.faults
        fake.faults = Faults(
            error_500=faults.error_500,
            drop=faults.drop,
            applied_then_drop=faults.applied_then_drop,
            latency_ms=faults.latency_ms,
            outage_until=time.monotonic() + seconds,
            seed=faults.seed,
        )

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


SOAK = Faults(error_500=0.05, drop=0.02, applied_then_drop=0.02, latency_ms=(1, 20), seed=11)


@pytest.mark.parametrize("per_request", [1, 10])
def test_soak_faults_and_an_outage_every_row_delivered_once_none_retryable(tmp_path, per_request):
    rows, outage_s = (1200, 10.0) if per_request == 1 else (2400, 4.0)
    with FakePlain(rate_limit=100_000, faults=SOAK) as fake:
        watcher = outage_after(fake, rows // 3, outage_s)
        summary = run(
            settings_for(fake, tmp_path, limit=rows, rate="400/s", events_per_request=per_request)
        )
        watcher.join()
        stats = fake.stats()
    assert summary.exit_code == 0, summary.message
    assert summary.outages >= 1
    assert stats.unavailable > 0 and stats.errors_500 > 0 and stats.applied_then_drops > 0
    # Applied-then-dropped requests come back as already_existed on their retry.
    assert set(summary.counts) <= {"delivered", "already_existed"}
    assert sum(summary.counts.values()) == rows
    assert len(stats.creations) == rows and set(stats.creations.values()) == {1}
    # The ledger and the results agree with the server.
    assert ledger_counts(tmp_path) == summary.counts
    results = pd.read_csv(Path(summary.results_dir) / "results.csv", dtype=str)
    assert len(results) == rows and set(results["external_id"]) == set(stats.creations)
    # Delivered rows carry Plain's event id (a duplicate answer does not say it).
    delivered = results[results["status"] == "delivered"]
    ids = dict(zip(delivered["external_id"], delivered["plain_event_id"], strict=True))
    assert len(ids) == summary.counts["delivered"]
    assert all(ids[e["externalId"]] == e["id"] for e in stats.events if e["externalId"] in ids)


def test_an_outage_longer_than_the_limit_stops_with_5_and_the_resume_completes(tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        outage_after(fake, 200, 60.0).join(timeout=0)
        started = time.monotonic()
        first = run(settings_for(fake, tmp_path, limit=600, rate="300/s", outage_limit="2s"))
        elapsed = time.monotonic() - started
        assert first.exit_code == 5, first.message
        assert "has not answered" in first.message and "outage limit is 2s" in first.message
        assert elapsed < 30
        assert first.counts.get("retryable", 0) > 0
        assert set(first.counts) <= {"delivered", "retryable", "in_flight"}
        failed = pd.read_csv(Path(first.results_dir) / "failed.csv", dtype=str)
        assert set(failed["status"]) <= {"retryable", "in_flight"}

        fake.faults = Faults()
        second = run(settings_for(fake, tmp_path, limit=600, rate="300/s"))
    assert second.exit_code == 0
    assert ledger_counts(tmp_path) == {"delivered": 600} or set(ledger_counts(tmp_path)) <= {
        "delivered",
        "already_existed",
    }
    stats = fake.stats()
    assert len(stats.creations) == 600 and set(stats.creations.values()) == {1}


# --- --max-failures ---------------------------------------------------------------------


def test_max_failures_as_a_count_stops_with_3(tmp_path):
    source = sample_with_bad_rows(tmp_path, every=10)
    with FakePlain(rate_limit=100_000) as fake:
        summary = run(settings_for(fake, tmp_path, sources=(source,), max_failures="5"))
    assert summary.exit_code == 3
    assert summary.counts["invalid"] > 5
    assert "--max-failures 5 rows" in summary.message
    # Reading stopped early; rows read but not sent are retryable, for the next run.
    assert summary.rows_read < SAMPLE_ROWS
    assert summary.counts.get("retryable", 0) > 0


def test_max_failures_as_a_share_waits_for_100_answers_then_stops_with_3(tmp_path):
    source = sample_with_bad_rows(tmp_path, every=5)  # 20% invalid
    with FakePlain(rate_limit=100_000) as fake:
        summary = run(settings_for(fake, tmp_path, sources=(source,), max_failures="10%"))
        assert summary.exit_code == 3
        answered = sum(summary.counts.values())
        assert answered >= 100 and answered < SAMPLE_ROWS
        # Under the share the run goes on to the end.
        tolerant = run(settings_for(fake, tmp_path, sources=(source,), max_failures="25%"))
    assert tolerant.exit_code == 1
    assert tolerant.counts["invalid"] == SAMPLE_ROWS // 5


def test_plain_answering_queries_while_every_write_fails_is_an_outage_too(tmp_path):
    with FakePlain(rate_limit=100_000, faults=Faults(error_500=1.0)) as fake:
        started = time.monotonic()
        summary = run(settings_for(fake, tmp_path, limit=40, concurrency=4, outage_limit="3s"))
        stats = fake.stats()
    assert summary.exit_code == 5 and summary.outages == 1
    assert summary.counts == {"retryable": 40}
    assert time.monotonic() - started < 20
    # Probes are cheap queries; writes went out only as the few trials.
    assert stats.by_operation["createCustomerEvent"] < 20


def test_a_plain_that_charges_each_event_and_allows_fewer_than_k_a_window_makes_k_fall(tmp_path):
    with FakePlain(rate_limit=10, window_s=0.5, count_mutations=True) as fake:
        summary = run(
            settings_for(
                fake, tmp_path, limit=40, concurrency=2, events_per_request=20, rate="auto"
            )
        )
        stats = fake.stats()
    assert summary.exit_code == 0 and summary.counts == {"delivered": 40}
    assert summary.events_per_request_used <= 10
    assert any("429" in reason for reason in summary.fallbacks)
    assert len(stats.creations) == 40 and set(stats.creations.values()) == {1}
