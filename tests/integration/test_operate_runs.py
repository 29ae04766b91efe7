"""Runs that take part of a job: shards, time windows, and rejected rows sent again."""

from __future__ import annotations

import csv
import itertools
import sqlite3
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from backfill.errors import ConfigError
from backfill.fakeplain import FakePlain
from backfill.ids import parse_timestamp
from backfill.pipeline import run
from tests.conftest import SAMPLE, SAMPLE_ROWS, sample_ids, settings_for


def _rows() -> list[dict[str, str]]:
    with open(SAMPLE, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_shards_of_a_job_deliver_every_row_once_into_their_own_folders(fake_plain, tmp_path):
    summaries = [run(settings_for(fake_plain, tmp_path, shard=f"{i}/3")) for i in range(3)]
    stats = fake_plain.stats()
    assert [s.exit_code for s in summaries] == [0, 0, 0]
    assert [s.selection for s in summaries] == [f"shard {i}/3" for i in range(3)]
    assert set(stats.creations) == sample_ids() and set(stats.creations.values()) == {1}
    assert sum(s.rows_read for s in summaries) == SAMPLE_ROWS
    assert all(600 < s.rows_read < 1000 for s in summaries)
    folders = {p.name for p in (tmp_path / "results").iterdir()}
    assert folders == {f"{s.run_id}-shard-{i}-of-3" for i, s in enumerate(summaries)}
    # A shard run again takes the same rows: all done, nothing sent.
    again = run(settings_for(fake_plain, tmp_path, shard="1/3"))
    assert again.requests == 0 and again.rows_read == summaries[1].rows_read


def test_invalid_rows_are_reported_by_exactly_one_shard(fake_plain, tmp_path):
    from tests.conftest import sample_with_bad_rows

    source = sample_with_bad_rows(tmp_path, every=50)
    summaries = [
        run(settings_for(fake_plain, tmp_path, sources=(source,), shard=f"{i}/2")) for i in range(2)
    ]
    assert sum(s.counts.get("invalid", 0) for s in summaries) == SAMPLE_ROWS // 50
    assert sum(s.rows_read for s in summaries) == SAMPLE_ROWS


@pytest.mark.timing
def test_a_shard_runs_at_its_share_of_the_rate(tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        whole = run(settings_for(fake, tmp_path / "a", rate="100/s", limit=300))
        half = run(settings_for(fake, tmp_path / "b", rate="100/s", limit=600, shard="0/2"))
    # Both send about 300 rows; the shard at 50/s takes about twice as long.
    assert 250 < half.rows_read < 350
    assert half.events_per_s < 0.7 * whole.events_per_s
    assert half.events_per_s > 35


def _intervals() -> list[tuple[datetime, datetime]]:
    moments = sorted(parse_timestamp(row["occurred_at"], UTC) for row in _rows())
    cuts = [moments[0], moments[len(moments) // 3], moments[2 * len(moments) // 3]]
    cuts.append(moments[-1] + timedelta(seconds=1))
    return list(itertools.pairwise(cuts))


def test_three_consecutive_intervals_deliver_each_row_once_in_its_interval(fake_plain, tmp_path):
    rows = _rows()
    delivered: list[set[str]] = []
    for since, until in _intervals():
        summary = run(
            settings_for(fake_plain, tmp_path, since=since.isoformat(), until=until.isoformat())
        )
        assert summary.exit_code == 0
        with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
            ids = {
                i
                for (i,) in db.execute(
                    "SELECT external_id FROM events WHERE delivered_by = ?", (summary.run_id,)
                )
            }
        expected = sum(since <= parse_timestamp(r["occurred_at"], UTC) < until for r in rows)
        assert len(ids) == expected == summary.rows_read
        for external_id in ids:
            event = next(e for e in fake_plain.stats().events if e["externalId"] == external_id)
            assert since <= datetime.fromisoformat(event["timestamp"]) < until
        delivered.append(ids)
    stats = fake_plain.stats()
    assert set().union(*delivered) == sample_ids()
    assert sum(len(d) for d in delivered) == SAMPLE_ROWS
    assert set(stats.creations.values()) == {1}


def test_bounds_are_checked_before_anything_is_sent(fake_plain, tmp_path):
    with pytest.raises(ConfigError, match="--since"):
        settings_for(fake_plain, tmp_path, since="last tuesday")
    with pytest.raises(ConfigError, match="before --until"):
        settings_for(fake_plain, tmp_path, since="2024-02-01", until="2024-01-01")
    with pytest.raises(ConfigError, match="--retry-rejected"):
        settings_for(fake_plain, tmp_path, retry_code="not_found")
    with pytest.raises(ConfigError, match="not a shard"):
        settings_for(fake_plain, tmp_path, shard="1/1")


def _create_customer(fake: FakePlain, email: str) -> None:
    """Create a customer through Plain's API, as a user fixing the cause would."""
    mutation = (
        "mutation($input: UpsertCustomerInput!) { upsertCustomer(input: $input) "
        "{ result customer { id } error { message code } } }"
    )
    variables = {
        "input": {
            "identifier": {"emailAddress": email},
            "onCreate": {
                "fullName": "Created Later",
                "email": {"email": email, "isVerified": False},
            },
            "onUpdate": {},
        }
    }
    reply = httpx.post(
        fake.url,
        json={"query": mutation, "variables": variables},
        headers={"Authorization": "Bearer test-key"},
    )
    assert reply.json()["data"]["upsertCustomer"]["error"] is None, reply.text


def test_retry_rejected_sends_again_the_rows_plain_refused_once_the_cause_is_fixed(tmp_path):
    email = _rows()[0]["customer_email"]
    missing = [r for r in _rows()[:300] if r["customer_email"] == email]
    with FakePlain(rate_limit=100_000, unknown_customers=[email]) as fake:
        first = run(settings_for(fake, tmp_path, limit=300))
        assert first.counts["rejected"] == len(missing) and first.exit_code == 1
        _create_customer(fake, email)
        plain_rerun = run(settings_for(fake, tmp_path, limit=300))
        other_code = run(
            settings_for(fake, tmp_path, limit=300, retry_rejected=True, retry_code="forbidden")
        )
        assert plain_rerun.requests == other_code.requests == 0
        retried = run(
            settings_for(fake, tmp_path, limit=300, retry_rejected=True, retry_code="not_found")
        )
        stats = fake.stats()
    assert retried.exit_code == 0 and retried.counts == {"delivered": 300}
    assert retried.requests == len(missing) + 1  # and the preflight
    assert set(stats.creations.values()) == {1} and len(stats.creations) == 300
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        outcomes = db.execute(
            "SELECT external_id, group_concat(outcome, ',') FROM "
            "(SELECT * FROM attempts ORDER BY id) GROUP BY external_id HAVING COUNT(*) > 1"
        ).fetchall()
    # The ledger keeps each attempt's outcome: refused first, delivered on the retry.
    assert len(outcomes) == len(missing)
    assert {o for _, o in outcomes} == {"rejected,delivered"}


def test_a_sql_sources_intervals_deliver_each_row_once_whatever_its_text_form(fake_plain, tmp_path):
    # The sample's timestamps are text in several ISO forms ("2023-01-05 09:20:03",
    # "...T...+00:00"); the query compares them as text with the bound :since / :until.
    database = tmp_path / "activity.db"
    rows = _rows()
    with sqlite3.connect(database) as db:
        columns = list(rows[0])
        db.execute(f"CREATE TABLE activity ({', '.join(columns)})")
        db.executemany(
            f"INSERT INTO activity VALUES ({', '.join('?' for _ in columns)})",
            [[row[c] for c in columns] for row in rows],
        )
    query = "SELECT * FROM activity WHERE occurred_at >= :since AND occurred_at < :until"
    delivered = 0
    for since, until in _intervals():
        summary = run(
            settings_for(
                fake_plain,
                tmp_path,
                sources=(),
                source_sql=query,
                source_url=f"sqlite:///{database}",
                since=since.isoformat(),
                until=until.isoformat(),
            )
        )
        expected = sum(since <= parse_timestamp(r["occurred_at"], UTC) < until for r in rows)
        assert summary.exit_code == 0 and summary.counts == {"delivered": expected}
        delivered += expected
    stats = fake_plain.stats()
    assert delivered == SAMPLE_ROWS == len(stats.creations)
    assert set(stats.creations.values()) == {1}


def test_validate_checks_only_the_rows_of_a_window_and_a_shard(tmp_path):
    from backfill.config import resolve
    from backfill.pipeline import validate
    from tests.conftest import MAPPING, sample_with_bad_rows

    source = sample_with_bad_rows(tmp_path, every=10)
    (first, second, third) = _intervals()
    whole = validate(resolve(sources=[source], mapping=MAPPING, results_dir=str(tmp_path / "v")))
    parts = [
        validate(
            resolve(
                sources=[source],
                mapping=MAPPING,
                results_dir=str(tmp_path / "v"),
                since=a.isoformat(),
                until=b.isoformat(),
            )
        )
        for a, b in (first, second, third)
    ]
    # Unreadable timestamps are in every window; the rest split exactly.
    assert whole.invalid == SAMPLE_ROWS // 10
    assert all(part.invalid == whole.invalid for part in parts)
    assert sum(part.valid for part in parts) == whole.valid
    shards = [
        validate(
            resolve(
                sources=[source], mapping=MAPPING, results_dir=str(tmp_path / "v"), shard=f"{i}/2"
            )
        )
        for i in range(2)
    ]
    assert sum(s.rows_read for s in shards) == SAMPLE_ROWS
    assert sum(s.invalid for s in shards) == whole.invalid
