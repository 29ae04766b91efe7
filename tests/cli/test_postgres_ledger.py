"""A PostgreSQL ledger through the CLI: overlapping runs of one job, a lost connection."""

from __future__ import annotations

import time

import psycopg

from backfill.fakeplain import FakePlain, Faults
from backfill.ledger.postgres import PostgresLedger, conninfo
from tests.conftest import (
    MAPPING,
    SAMPLE,
    SAMPLE_ROWS,
    clean_env,
    cli,
    cli_popen,
    sample_ids,
)

ENV = clean_env(PLAIN_API_KEY="test-key")


def args(url: str, ledger: str, results: str, *extra: str) -> list[str]:
    return [
        "run",
        SAMPLE,
        "--mapping",
        MAPPING,
        "--api-url",
        url,
        "--ledger",
        ledger,
        "--results-dir",
        results,
        *extra,
    ]


def test_two_runs_of_one_job_on_one_ledger_send_every_row_once(pg_url, tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        runs = [
            cli_popen(*args(fake.url, pg_url, str(tmp_path / f"r{n}"), "--rate", "300/s"), env=ENV)
            for n in range(2)
        ]
        outputs = [run.communicate(timeout=120) for run in runs]
        stats = fake.stats()
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr
    # Every row created once, and no create was even attempted twice.
    assert set(stats.creations) == sample_ids() and set(stats.creations.values()) == {1}
    assert stats.by_operation["createCustomerEvent"] == SAMPLE_ROWS
    with PostgresLedger.open(pg_url) as ledger:
        assert ledger.status_counts() == {"delivered": SAMPLE_ROWS}
        by_run = dict(ledger.query("SELECT delivered_by, COUNT(*) FROM events GROUP BY 1"))
    # Both runs sent part of the rows: the claims split the work.
    assert len(by_run) == 2 and sum(by_run.values()) == SAMPLE_ROWS
    # The password-free URL is what the outputs show; no result row is missing.
    for n in range(2):
        (results,) = (tmp_path / f"r{n}").glob("*/results.csv")
        assert len(results.read_text(encoding="utf-8").splitlines()) == SAMPLE_ROWS + 1


def test_a_lost_ledger_connection_stops_the_run_and_the_next_run_resumes_exactly(pg_url, tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        run = cli_popen(*args(fake.url, pg_url, str(tmp_path / "r1"), "--rate", "100/s"), env=ENV)
        deadline = time.monotonic() + 60
        while len(fake.stats().creations) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        with psycopg.connect(conninfo(pg_url), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        _, stderr = run.communicate(timeout=60)
        assert run.returncode == 2, stderr
        assert "ledger" in stderr and "Traceback" not in stderr
        created = len(fake.stats().creations)
        assert 0 < created < SAMPLE_ROWS

        again = cli(*args(fake.url, pg_url, str(tmp_path / "r2"), "--rate", "2000/s"), env=ENV)
        stats = fake.stats()
    assert again.returncode == 0, again.stderr
    assert set(stats.creations) == sample_ids() and set(stats.creations.values()) == {1}


def test_rows_a_live_run_still_holds_at_the_end_make_the_other_run_exit_6(pg_url, tmp_path):
    with FakePlain(rate_limit=100_000) as slow, FakePlain(rate_limit=100_000) as fast:
        holder = cli_popen(*args(slow.url, pg_url, str(tmp_path / "a"), "--rate", "50/s"), env=ENV)
        deadline = time.monotonic() + 60
        while len(slow.stats().creations) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        # From now on the holder's requests hang: the rows they carry stay claimed by it.
        slow.faults = Faults(latency_ms=(120_000, 120_000))
        time.sleep(0.5)
        # The other run waits 3 s, not the product's 30, for the holder to settle its rows:
        # they hang for two minutes, so are still held either way.
        other = cli(
            *args(fast.url, pg_url, str(tmp_path / "b"), "--rate", "2000/s"),
            env=ENV,
            constants={"backfill.job.HELD_WAIT_S": 3.0},
        )
        holder.kill()
        holder.communicate(timeout=30)
        sent_by_other = set(fast.stats().creations)
        sent_by_holder = set(slow.stats().creations)
    assert other.returncode == 6, other.stderr
    assert "held by another live run" in other.stdout + other.stderr
    # Nothing was sent twice, and what is missing is what the holder still holds.
    assert not sent_by_other & sent_by_holder
    with PostgresLedger.open(pg_url) as ledger:
        held = {
            i for (i,) in ledger.query("SELECT external_id FROM events WHERE status = 'in_flight'")
        }
    assert held and held.isdisjoint(sent_by_other)
    assert sent_by_other | sent_by_holder | held == sample_ids()
    (results,) = (tmp_path / "b").glob("*/results.csv")
    text = results.read_text(encoding="utf-8")
    assert text.count("held by run") >= len(held)


def test_a_wrong_ledger_or_source_password_exits_2_without_showing_it(pg_url, tmp_path):
    from sqlalchemy.engine import make_url

    with psycopg.connect(conninfo(pg_url), autocommit=True) as admin:
        admin.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'backfill_secret')"
            " THEN CREATE ROLE backfill_secret LOGIN PASSWORD 'the-right-one'; END IF; END $$"
        )
    url = make_url(pg_url).set(username="backfill_secret", password="wr0ng-pw-canary")
    wrong = url.render_as_string(hide_password=False)
    with FakePlain(rate_limit=100_000) as fake:
        ledger = cli(*args(fake.url, wrong, str(tmp_path / "a")), env=ENV)
        source = cli(
            "validate",
            "--mapping",
            MAPPING,
            "--source-sql",
            "SELECT 1",
            "--source-url",
            wrong,
            env=ENV,
        )
        requests = fake.stats().by_operation.get("createCustomerEvent", 0)
    for done in (ledger, source):
        assert done.returncode == 2, done.stderr
        assert "wr0ng-pw-canary" not in done.stdout + done.stderr
        assert "password authentication failed" in done.stderr
    assert requests == 0
