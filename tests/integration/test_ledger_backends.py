"""One ledger suite, run against SQLite and against a real PostgreSQL."""

from __future__ import annotations

import os

import psycopg
import pytest

from backfill.config import LedgerTarget
from backfill.errors import LedgerError
from backfill.ledger import SCHEMA_VERSION, CustomerRecord, SqliteLedger
from backfill.ledger.postgres import PostgresLedger, conninfo
from backfill.models import Attempt, Invalid, Outcome, RowProblem, Status
from tests.integration.test_ledger import event


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return request.getfixturevalue("pg_url")


def open_ledger(target: str):
    return (
        PostgresLedger.open(target)
        if LedgerTarget.parse(target).kind == "postgres"
        else SqliteLedger.open(target)
    )


@pytest.fixture
def ledger(target):
    opened = open_ledger(target)
    opened.start_run("run-1", options={}, mapping_hash="m1", id_rule="rule", id_format_version=1)
    yield opened
    opened.close()


def outcome(status, attempts=1, **given):
    return Outcome(status, attempts, sent_at=1.0, answered_at=1.5, **given)


def test_a_new_ledger_is_at_the_current_schema_and_reopening_keeps_it(ledger, target):
    assert ledger.schema_version == SCHEMA_VERSION
    ledger.set_meta("id_rule", "keys")
    ledger.close()
    with open_ledger(target) as again:
        assert again.schema_version == SCHEMA_VERSION
        assert again.meta("id_rule") == "keys" and again.meta("other") is None
        assert [r.run_id for r in again.runs()] == ["run-1"]


def test_events_go_in_flight_then_settle_and_lookups_see_them(ledger):
    ledger.mark_in_flight("run-1", [event("a"), event("b", "3")], mapping_hash="m1", claim_s=60)
    assert ledger.status_counts() == {"in_flight": 2}
    attempt = Attempt("a", 1, "delivered", 1.0, 1.5, 200)
    ledger.record_outcomes(
        "run-1",
        [
            (event("a"), outcome(Status.DELIVERED, plain_event_id="tev_1", attempts=1)),
            (event("b", "3"), outcome(Status.REJECTED, code="not_found", message="no customer")),
        ],
        [attempt],
    )
    entries = ledger.lookup(["a", "b", "missing"])
    assert set(entries) == {"a", "b"}
    assert entries["a"].status == Status.DELIVERED and entries["a"].plain_event_id == "tev_1"
    assert entries["a"].run_id == "run-1" and entries["a"].attempts == 1
    assert entries["b"].status == Status.REJECTED and entries["b"].code == "not_found"
    assert entries["b"].position == "3" and entries["b"].payload_hash == "p-b"
    assert ledger.status_counts() == {"delivered": 1, "rejected": 1}
    row = ledger.event("a")
    assert row is not None and row["claimed_by"] is None and row["delivered_by"] == "run-1"
    assert ledger.event("missing") is None


def test_first_seen_reports_repeats_within_and_across_chunks(ledger):
    assert ledger.first_seen([("x", "f", "2"), ("y", "f", "3"), ("x", "f", "4")]) == {
        "x": ("f", "2")
    }
    assert ledger.first_seen([("y", "g", "9"), ("z", "f", "10")]) == {"y": ("f", "3")}


def test_issues_and_customers_are_kept_the_latest_winning(ledger):
    problem = RowProblem("bad_timestamp", "not a time", "occurred_at")
    ledger.record_issues("run-1", [(Invalid("in.csv", "7", problem, "x"), Status.INVALID)])
    ledger.record_issues("run-1", [(Invalid("in.csv", "7", problem, "x"), Status.INVALID)])
    assert ledger.query("SELECT COUNT(*) FROM row_issues") == [(1,)]
    record = CustomerRecord("emailAddress:a@x.example", Status.REJECTED, code="forbidden")
    ledger.record_customer("run-1", record, "failed")
    ledger.record_customer(
        "run-1", CustomerRecord(record.identifier, Status.DELIVERED, "c_1"), "created"
    )
    found = ledger.customers([record.identifier, "emailAddress:b@x.example"])
    assert found == {record.identifier: CustomerRecord(record.identifier, Status.DELIVERED, "c_1")}
    assert ledger.first_customer_sighting(record.identifier)
    assert not ledger.first_customer_sighting(record.identifier)


def test_a_crashed_runs_claims_are_taken_over_by_the_next_run(target):
    first = open_ledger(target)
    first.start_run("run-1", options={}, mapping_hash="m", id_rule="r", id_format_version=1)
    first.mark_in_flight("run-1", [event("a")], mapping_hash="m", claim_s=60)
    first.end_run("run-1", state="crashed", exit_code=137, counts={}, workspace_id="")
    first.close()
    with open_ledger(target) as second:
        second.start_run("run-2", options={}, mapping_hash="m", id_rule="r", id_format_version=1)
        claimed = second.mark_in_flight("run-2", [event("a")], mapping_hash="m", claim_s=60)
        assert claimed == {"a"}
        row = second.event("a")
        assert row is not None and row["claimed_by"] == "run-2"


# --- PostgreSQL only: several processes share one ledger ------------------------------


def test_rows_a_live_run_holds_are_not_claimed_by_another(pg_url):
    with PostgresLedger.open(pg_url) as one, PostgresLedger.open(pg_url) as two:
        one.start_run("run-1", options={}, mapping_hash="m", id_rule="r", id_format_version=1)
        two.start_run("run-2", options={}, mapping_hash="m", id_rule="r", id_format_version=1)
        got = one.mark_in_flight("run-1", [event("a"), event("b")], mapping_hash="m", claim_s=60)
        assert got == {"a", "b"}
        # run-2 planned a, b and c before run-1 claimed them: it gets only c.
        events = [event("a"), event("b"), event("c")]
        assert two.mark_in_flight("run-2", events, mapping_hash="m", claim_s=60) == {"c"}
        one.record_outcomes("run-1", [(event("a"), outcome(Status.DELIVERED))], [])
        # Settled by run-1: never claimed again, by anyone.
        assert two.mark_in_flight("run-2", [event("a")], mapping_hash="m", claim_s=60) == set()
        # run-1 ends without sending b: its claim lapses with it.
        one.end_run("run-1", state="stopped", exit_code=130, counts={}, workspace_id="")
        assert two.mark_in_flight("run-2", [event("b")], mapping_hash="m", claim_s=60) == {"b"}
        assert two.status_counts() == {"delivered": 1, "in_flight": 2}


def test_a_claim_whose_heartbeat_lapsed_is_taken_over(pg_url):
    with PostgresLedger.open(pg_url) as one, PostgresLedger.open(pg_url) as two:
        one.start_run("run-1", options={}, mapping_hash="m", id_rule="r", id_format_version=1)
        two.start_run("run-2", options={}, mapping_hash="m", id_rule="r", id_format_version=1)
        one.mark_in_flight("run-1", [event("a")], mapping_hash="m", claim_s=-1)
        assert two.mark_in_flight("run-2", [event("a")], mapping_hash="m", claim_s=60) == {"a"}


def start(ledger, run_id):
    ledger.start_run(run_id, options={}, mapping_hash="m", id_rule="r", id_format_version=1)


def test_a_live_run_taken_for_dead_stops_claiming_and_keeps_no_one_elses_claim(pg_url):
    with PostgresLedger.open(pg_url) as one, PostgresLedger.open(pg_url) as two:
        start(one, "run-1")
        assert one.mark_in_flight("run-1", [event("a")], mapping_hash="m", claim_s=60) == {"a"}
        # run-1 went quiet for two minutes (as a run stuck in a slow query would)...
        one.query("UPDATE runs SET heartbeat_at = heartbeat_at - 120 WHERE run_id = 'run-1'")
        one.query("UPDATE events SET claimed_until = claimed_until - 120")
        start(two, "run-2")  # ...so run-2 takes it for dead, and its rows with it.
        assert dict(two.query("SELECT run_id, state FROM runs")) == {
            "run-1": "crashed",
            "run-2": "running",
        }
        assert two.mark_in_flight("run-2", [event("a")], mapping_hash="m", claim_s=60) == {"a"}
        # run-1 learns it at its next heartbeat or claim, and must stop.
        with pytest.raises(LedgerError, match="taken for dead"):
            one.heartbeat("run-1")
        with pytest.raises(LedgerError, match="taken for dead"):
            one.mark_in_flight("run-1", [event("b")], mapping_hash="m", claim_s=60)
        # Its late answer for a is recorded, but run-2's claim on a stays run-2's.
        one.record_outcomes("run-1", [(event("a"), outcome(Status.DELIVERED))], [])
        row = two.event("a")
        assert row is not None and row["status"] == "delivered" and row["claimed_by"] == "run-2"


def test_liveness_is_judged_on_the_database_clock_not_a_workers(pg_url, monkeypatch):
    with PostgresLedger.open(pg_url) as one, PostgresLedger.open(pg_url) as two:
        start(one, "run-1")
        one.mark_in_flight("run-1", [event("a")], mapping_hash="m", claim_s=60)
        # The second worker's clock runs 90 s ahead: run-1 is still alive all the same.
        real = __import__("time").time
        monkeypatch.setattr("backfill.ledger.base.time.time", lambda: real() + 90)
        start(two, "run-2")
        assert two.mark_in_flight("run-2", [event("a")], mapping_hash="m", claim_s=60) == set()
        one.heartbeat("run-1")
        assert dict(two.query("SELECT run_id, state FROM runs"))["run-1"] == "running"


def test_an_ended_run_is_no_holder_even_to_a_claim_started_before_it(pg_url):
    with PostgresLedger.open(pg_url) as one, PostgresLedger.open(pg_url) as two:
        start(one, "run-1")
        start(two, "run-2")
        one.mark_in_flight("run-1", [event("a")], mapping_hash="m", claim_s=60)
        one.heartbeat("run-1")
        one.end_run("run-1", state="failed", exit_code=2, counts={}, workspace_id="")
        # end_run released the claim; and a run in any ended state would hold nothing.
        two.query("UPDATE events SET claimed_by = 'run-1'")
        assert two.mark_in_flight("run-2", [event("a")], mapping_hash="m", claim_s=60) == {"a"}


def test_a_url_password_in_the_query_string_is_never_shown(pg_url):
    url = pg_url + "?application_name=x&password=canary-pw"
    with PostgresLedger.open(url) as ledger:
        assert "canary-pw" not in ledger.path and "password=***" in ledger.path
    with pytest.raises(LedgerError) as raised:
        PostgresLedger.open(url.replace("application_name", "no_such_option"))
    assert "canary-pw" not in str(raised.value)


def test_an_unreachable_database_is_a_ledger_error_without_the_password():
    url = "postgresql+psycopg://backfill:s3cret-pw@127.0.0.1:9/ledger"
    with pytest.raises(LedgerError) as raised:
        PostgresLedger.open(url)
    assert "s3cret-pw" not in str(raised.value) and "127.0.0.1:9" in str(raised.value)


def test_a_connection_lost_mid_run_is_a_ledger_error(pg_url):
    with PostgresLedger.open(pg_url) as ledger:
        ledger.start_run("run-1", options={}, mapping_hash="m", id_rule="r", id_format_version=1)
        pid = ledger.query("SELECT pg_backend_pid()")[0][0]
        with psycopg.connect(conninfo(pg_url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(LedgerError, match="failed"):
            ledger.mark_in_flight("run-1", [event("a")], mapping_hash="m", claim_s=60)


def test_a_wrong_password_is_refused_and_never_shown(pg_url):
    from sqlalchemy.engine import make_url

    with psycopg.connect(conninfo(pg_url), autocommit=True) as admin:
        admin.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'backfill_secret')"
            " THEN CREATE ROLE backfill_secret LOGIN PASSWORD 'the-right-one'; END IF; END $$"
        )
    url = make_url(pg_url).set(username="backfill_secret", password="wr0ng-pw-canary")
    wrong = url.render_as_string(hide_password=False)
    try:
        psycopg.connect(conninfo(wrong), connect_timeout=5).close()
    except psycopg.OperationalError:
        pass
    else:
        if os.environ.get("CI") == "true":
            pytest.fail("the test server accepted a wrong password: scripts/pg.sh sets this up")
        pytest.skip("this server trusts every connection from 127.0.0.1")
    with pytest.raises(LedgerError) as raised:
        PostgresLedger.open(wrong)
    assert "wr0ng-pw-canary" not in str(raised.value)
    assert "password authentication failed" in str(raised.value)


async def test_rows_whose_holder_ends_during_the_wait_are_sent_by_the_run_that_waited(
    pg_url, tmp_path, fake_plain
):
    import asyncio

    from backfill import arun
    from tests.conftest import sample_ids, settings_for

    held = sorted(sample_ids())[:10]
    holder = PostgresLedger.open(pg_url)
    start(holder, "holder")
    assert holder.mark_in_flight(
        "holder", [event(i) for i in held], mapping_hash="m", claim_s=60
    ) == set(held)

    async def end_the_holder_soon():
        await asyncio.sleep(2)
        holder.end_run("holder", state="failed", exit_code=2, counts={}, workspace_id="")

    ending = asyncio.create_task(end_the_holder_soon())
    summary = await asyncio.wait_for(arun(settings_for(fake_plain, tmp_path, ledger=pg_url)), 60)
    await ending
    holder.close()
    assert summary.exit_code == 0, summary.message
    creations = fake_plain.stats().creations
    assert set(creations) == sample_ids() and set(creations.values()) == {1}
    with PostgresLedger.open(pg_url) as ledger:
        assert ledger.status_counts() == {"delivered": len(sample_ids())}


def test_status_and_export_read_every_status_on_both_kinds(target, tmp_path, monkeypatch):
    from backfill import job_export as export
    from backfill.fakeplain import FakePlain
    from backfill.job_status import job_status
    from backfill.pipeline import run
    from tests.conftest import sample_with_bad_rows, settings_for

    source = sample_with_bad_rows(tmp_path, every=25)
    with FakePlain(rate_limit=100_000) as fake:
        summary = run(settings_for(fake, tmp_path, sources=(source,), ledger=target, limit=300))
    assert summary.counts == {"delivered": 288, "invalid": 12}
    status = job_status(target)
    assert status.counts == {"delivered": 288, "invalid": 12} and status.left == 0
    assert [(c.code, c.rows) for c in status.codes] == [("bad_timestamp", 12)]
    monkeypatch.setattr(export, "PAGE", 7)  # several pages of events and of issues
    done = export.export_results(target, str(tmp_path / "export"))
    assert done.by_status == {"delivered": 288, "invalid": 12} and done.failed == 12
    lines = (tmp_path / "export" / "results.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 301 and len(set(lines)) == 301
