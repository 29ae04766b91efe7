import sqlite3
from pathlib import Path

import pytest

from backfill.errors import LedgerBusy, LedgerError
from backfill.ledger import SCHEMA_VERSION, SqliteLedger
from backfill.models import Attempt, Event, EventKind, Invalid, Outcome, RowProblem, Status


@pytest.fixture
def ledger_path(tmp_path):
    return str(tmp_path / "sub" / "ledger.sqlite")


@pytest.fixture
def ledger(ledger_path):
    opened = SqliteLedger.open(ledger_path)
    opened.start_run("run-1", options={}, mapping_hash="m1", id_rule="rule", id_format_version=1)
    yield opened
    opened.close()


def event(ext_id, position="2"):
    return Event(
        ext_id,
        EventKind.CUSTOMER,
        {"title": "t"},
        "p-" + ext_id,
        "in.csv",
        position,
        "2024-01-01T00:00:00.000Z",
    )


def test_a_new_ledger_has_every_table_and_the_schema_version(ledger):
    tables = {name for (name,) in ledger.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "meta", "runs", "events", "row_issues", "attempts"} <= tables
    assert ledger.schema_version == SCHEMA_VERSION
    assert ledger.query("PRAGMA journal_mode")[0][0] == "wal"


def test_one_process_holds_a_ledger_at_a_time(ledger, ledger_path):
    with pytest.raises(LedgerBusy, match="run run-1"):
        SqliteLedger.open(ledger_path)


def test_a_ledger_from_a_newer_version_is_refused(ledger_path):
    SqliteLedger.open(ledger_path).close()
    conn = sqlite3.connect(ledger_path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="newer plain-backfill"):
        SqliteLedger.open(ledger_path)


def test_a_file_that_is_not_a_ledger_is_a_ledger_error(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="not a usable ledger"):
        SqliteLedger.open(str(path))


def test_in_flight_then_outcome(ledger):
    ledger.mark_in_flight("run-1", [event("a"), event("b", "3")], mapping_hash="m1", claim_s=60)
    assert ledger.event("a")["status"] == "in_flight"
    assert ledger.event("a")["claimed_by"] == "run-1"
    attempts = [
        Attempt("a", 1, "transient", 1.0, 1.5, 500, "HTTP_500"),
        Attempt("a", 2, "delivered", 2.0, 2.1, 200),
    ]
    ledger.record_outcomes(
        "run-1",
        [(event("a"), Outcome(Status.DELIVERED, 2, "tev_1", "c_1", sent_at=1.0, answered_at=2.1))],
        attempts,
    )
    row = ledger.event("a")
    assert (row["status"], row["plain_event_id"], row["attempts"], row["claimed_by"]) == (
        "delivered",
        "tev_1",
        2,
        None,
    )
    assert row["delivered_by"] == "run-1"
    entries = ledger.lookup(["a", "b", "zzz"])
    assert entries["a"].status == Status.DELIVERED and entries["b"].status == Status.IN_FLIGHT
    assert "zzz" not in entries
    assert ledger.query("SELECT COUNT(*) FROM attempts WHERE external_id = 'a'")[0][0] == 2


def test_lookup_handles_more_ids_than_one_query_takes(ledger):
    events = [event(f"e{i}", str(i)) for i in range(1_234)]
    ledger.mark_in_flight("run-1", events, mapping_hash="m1", claim_s=60)
    assert len(ledger.lookup(e.external_id for e in events)) == 1_234


def test_first_seen_reports_repeats_within_and_across_chunks(ledger):
    assert ledger.first_seen([("x", "f", "2"), ("y", "f", "3"), ("x", "f", "4")]) == {
        "x": ("f", "2")
    }
    assert ledger.first_seen([("y", "f", "9"), ("z", "f", "10")]) == {"y": ("f", "3")}


def test_row_issues_are_kept_per_run(ledger):
    issue = Invalid("in.csv", "5", RowProblem("field_count", "expected 3 fields, found 2"))
    ledger.record_issues("run-1", [(issue, Status.INVALID)])
    assert ledger.query("SELECT status, code, position FROM row_issues") == [
        ("invalid", "field_count", "5")
    ]


def test_a_new_run_ends_a_crashed_one_and_takes_its_claims(ledger, ledger_path):
    ledger.mark_in_flight("run-1", [event("a")], mapping_hash="m1", claim_s=600)
    ledger.close()
    resumed = SqliteLedger.open(ledger_path)
    resumed.start_run("run-2", options={}, mapping_hash="m1", id_rule="rule", id_format_version=1)
    states = dict(resumed.query("SELECT run_id, state FROM runs"))
    assert states == {"run-1": "crashed", "run-2": "running"}
    assert resumed.event("a")["claimed_by"] is None
    resumed.close()


def test_a_ledger_of_schema_1_is_upgraded_in_place_and_keeps_its_events(tmp_path):
    from backfill.ledger import MIGRATIONS

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute(
        "INSERT INTO events (external_id, status, kind, source, position, payload_hash,"
        " mapping_hash, run_id, created_at, updated_at) VALUES"
        " ('ns_1', 'delivered', 'customer', 'a.csv', '2', 'p', 'm', 'r0', 0, 0)"
    )
    conn.commit()
    conn.close()
    with SqliteLedger.open(str(path)) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION == 4
        assert ledger.query("SELECT name FROM sqlite_master WHERE name = 'events_claimed'")
        assert ledger.lookup(["ns_1"])["ns_1"].status == Status.DELIVERED
        assert ledger.customers(["emailAddress:a@b.example"]) == {}


def test_open_readonly_never_changes_or_creates_a_ledger(tmp_path, ledger_path):
    missing = tmp_path / "missing.sqlite"
    with SqliteLedger.open_readonly(str(missing)) as empty:
        assert empty.lookup(["x"]) == {}
        assert empty.first_seen([("x", "f", "1"), ("x", "f", "2")]) == {"x": ("f", "1")}
    assert not list(tmp_path.glob("missing*"))

    writer = SqliteLedger.open(ledger_path)
    writer.mark_in_flight("r", [event("a")], mapping_hash="m", claim_s=1)
    writer.close()
    before = {p.name: p.read_bytes() for p in Path(ledger_path).parent.iterdir()}
    with SqliteLedger.open_readonly(ledger_path) as reader:
        assert reader.lookup(["a"])["a"].status == Status.IN_FLIGHT
        assert reader.first_seen([("a", "f", "1")]) == {}
    after = {p.name: p.read_bytes() for p in Path(ledger_path).parent.iterdir()}
    assert after == before


def test_first_seen_does_not_take_an_id_for_another_that_shares_its_hash(ledger):
    # A row already in the table under the id's hash but with another id's check.
    ledger.first_seen([("other", "f", "1")])
    ledger._conn.execute("UPDATE seen SET h = ? WHERE h = ?", (hash("x"), hash("other")))
    assert ledger.first_seen([("x", "f", "2")]) == {}
    # The id itself repeated is still a repeat.
    assert ledger.first_seen([("other2", "f", "3"), ("other2", "f", "4")]) == {"other2": ("f", "3")}
