"""The ledger in PostgreSQL: what SQLite's ledger keeps, where every worker reaches it.

The same tables, statuses and migrations as `backfill.ledger` (SQLite), for runs whose
disk does not outlive them (Airflow workers). Several processes may use one ledger at
once, so a row is claimed before it is sent: `mark_in_flight` takes only rows that no
live run holds, and says which it took.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg

from backfill.errors import LedgerError
from backfill.ledger import (
    _DRIVER,
    SCHEMA_VERSION,
    CustomerRecord,
    LedgerBase,
    _check,
    _first_places,
    _note_earlier,
    _repeats,
)
from backfill.ledger import MIGRATIONS as SQLITE_MIGRATIONS
from backfill.models import Attempt, Event, LedgerEntry, Outcome, Status
from backfill.urls import mask_url

#: A run whose heartbeat is older than this is taken for dead: its claims are taken over.
STALE_AFTER_S: Final = 60.0
#: Every time is the database's: the workers' clocks may disagree, the server's is one.
_NOW: Final = "extract(epoch FROM clock_timestamp())"
#: Tries of a claim that lost a deadlock with another run's (PostgreSQL cancels one).
_CLAIM_TRIES: Final = 3
_STATUSES: Final = {str(status): status for status in Status}
#: Claims may be taken over from rows in these states (never from settled ones).
_CLAIMABLE: Final = ("in_flight", "retryable", "rejected", "invalid")

#: SQLite's migrations in PostgreSQL's words: one schema, two dialects.
_DIALECT: Final = (
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (
        re.compile(r"\bid INTEGER PRIMARY KEY\b"),
        "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    ),
)


def postgres_ddl(sqlite_ddl: str) -> str:
    """A migration of SQLite's ledger as PostgreSQL runs it.

    >>> postgres_ddl("CREATE TABLE t (at REAL NOT NULL)")
    'CREATE TABLE t (at DOUBLE PRECISION NOT NULL)'
    """
    for pattern, replacement in _DIALECT:
        sqlite_ddl = pattern.sub(replacement, sqlite_ddl)
    return sqlite_ddl


#: Forward migrations: index i upgrades a ledger from version i to i + 1.
MIGRATIONS: Final = tuple(postgres_ddl(script) for script in SQLITE_MIGRATIONS)
assert len(MIGRATIONS) == SCHEMA_VERSION

#: Migrations of concurrent runs wait for each other on this advisory lock.
_MIGRATION_LOCK: Final = 0x706C61696E  # "plain"


def conninfo(url: str) -> str:
    """libpq's form of a SQLAlchemy-style URL (`postgresql+psycopg://` becomes `postgresql://`).

    >>> conninfo("postgresql+psycopg://u:p@127.0.0.1:5432/db")
    'postgresql://u:p@127.0.0.1:5432/db'
    """
    return _DRIVER.sub("postgresql://", url, count=1)


class PostgresLedger(LedgerBase):
    """A ledger in a PostgreSQL database. Open it with `PostgresLedger.open(url)`."""

    def __init__(self, url: str, conn: psycopg.Connection[Any]) -> None:
        self.path = mask_url(url)
        self._url = url
        self._conn = conn
        self._seen_sources: dict[str, int] = {}
        # As in SQLite's ledger: planning asks from a worker thread while the loop records.
        self._mutex = threading.RLock()

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> PostgresLedger:
        """Connect, creating and migrating the tables as needed (unless `migrate` is off)."""
        shown = mask_url(url)
        try:
            conn = psycopg.connect(conninfo(url), autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise LedgerError(f"cannot reach the ledger {shown}: {_reason(exc, url)}") from None
        ledger = cls(url, conn)
        try:
            ledger._setup(migrate=migrate)
        except BaseException:
            conn.close()
            raise
        return ledger

    def _setup(self, *, migrate: bool) -> None:
        with self._transaction() as cur:
            if migrate:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            version = self._version(cur)
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path} was written by a newer plain-backfill (schema {version}, this "
                    f"version knows {SCHEMA_VERSION}); upgrade plain-backfill"
                )
            for target in range(version, SCHEMA_VERSION if migrate else version):
                for statement in _statements(MIGRATIONS[target]):
                    cur.execute(statement.encode())
                cur.execute("DELETE FROM schema_version")
                cur.execute("INSERT INTO schema_version VALUES (%s)", (target + 1,))
        with self._transaction() as cur:
            cur.execute(
                "CREATE TEMP TABLE seen (h BIGINT PRIMARY KEY, crc BIGINT NOT NULL,"
                " source INTEGER NOT NULL, position TEXT NOT NULL)"
            )
            cur.execute("CREATE TEMP TABLE seen_customers (identifier TEXT PRIMARY KEY)")

    @staticmethod
    def _version(cur: psycopg.Cursor[Any]) -> int:
        cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
        row = cur.fetchone()
        if row is None or not row[0]:
            return 0
        cur.execute("SELECT version FROM schema_version")
        found = cur.fetchone()
        return int(found[0]) if found else 0

    @property
    def schema_version(self) -> int:
        with self._transaction() as cur:
            return self._version(cur)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PostgresLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ----------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, reraise: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """One atomic unit; a database failure becomes a LedgerError naming the ledger
        (a deadlock is raised as it is with `reraise`, for the caller to try again)."""
        with self._mutex:
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    yield cur
            except psycopg.Error as exc:
                if reraise and isinstance(exc, psycopg.errors.DeadlockDetected):
                    raise
                raise self._failed(exc) from None

    def _execute_described(
        self, sql: str, params: Sequence[Any] = ()
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The column names and every row `sql` gives; `?` placeholders, as in SQLite."""
        with self._transaction() as cur:
            cur.execute(sql.replace("?", "%s").encode(), params)
            if cur.description is None:
                return [], []
            return [d.name for d in cur.description], cur.fetchall()

    def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._transaction() as cur:
            cur.executemany(sql.replace("?", "%s").encode(), rows)

    def _failed(self, exc: psycopg.Error) -> LedgerError:
        return LedgerError(
            f"the ledger {self.path} failed: {_reason(exc, self._url)}; nothing more is sent"
        )

    # --- runs --------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def start_run(
        self,
        run_id: str,
        *,
        options: Mapping[str, Any],
        mapping_hash: str,
        id_rule: str,
        id_format_version: int,
    ) -> None:
        """Record a new run, and end runs whose heartbeat stopped (their claims lapse)."""
        with self._transaction() as cur:
            cur.execute(
                "UPDATE runs SET state = 'crashed', ended_at = COALESCE(heartbeat_at, started_at)"
                f" WHERE state = 'running' AND COALESCE(heartbeat_at, started_at) < {_NOW} - %s",
                (STALE_AFTER_S,),
            )
            cur.execute(
                "INSERT INTO runs (run_id, started_at, heartbeat_at, state, options, mapping_hash,"
                f" id_rule, id_format_version) VALUES (%s, {_NOW}, {_NOW}, 'running', %s, %s,"
                " %s, %s)",
                (run_id, json.dumps(options), mapping_hash, id_rule, id_format_version),
            )

    def end_run(
        self,
        run_id: str,
        *,
        state: str,
        exit_code: int,
        counts: Mapping[str, Any],
        workspace_id: str,
    ) -> None:
        """Record the run's end and drop its claims, so that the next run takes them at once.

        When the connection was lost (the likely reason a run ends early) a new one is
        made for this, so the run is not left looking alive.
        """
        if self._conn.broken or self._conn.closed:
            try:
                self._conn = psycopg.connect(
                    conninfo(self._url), autocommit=True, connect_timeout=10
                )
            except psycopg.Error as exc:
                raise self._failed(exc) from None
        with self._transaction() as cur:
            cur.execute(
                f"UPDATE runs SET ended_at = {_NOW}, state = %s, exit_code = %s, counts = %s,"
                " workspace_id = %s WHERE run_id = %s",
                (state, exit_code, json.dumps(counts), workspace_id or None, run_id),
            )
            cur.execute(
                "UPDATE events SET claimed_by = NULL, claimed_until = NULL"
                f" WHERE external_id IN ({_HELD_BY})",
                (run_id,),
            )

    def heartbeat(self, run_id: str) -> None:
        """Keep this run alive, and its claims with it.

        Raises LedgerError when another run has taken this one for dead (no heartbeat for
        `STALE_AFTER_S`): its rows may be claimed by others now, so it must not go on.
        """
        with self._transaction() as cur:
            cur.execute(
                f"UPDATE runs SET heartbeat_at = {_NOW} WHERE run_id = %s AND state = 'running'",
                (run_id,),
            )
            if cur.rowcount != 1:
                raise _taken_for_dead(run_id)
            cur.execute(
                f"UPDATE events SET claimed_until = {_NOW} + %s WHERE external_id IN ({_HELD_BY})",
                (STALE_AFTER_S, run_id),
            )

    # --- planning ----------------------------------------------------------------

    def lookup(self, external_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """What the ledger holds for these ids: one statement for them all."""
        rows = self._execute(
            "SELECT external_id, status, payload_hash, mapping_hash,"
            " COALESCE(delivered_by, run_id), source, position, COALESCE(plain_event_id, ''),"
            " COALESCE(code, ''), COALESCE(message, ''), attempts,"
            " COALESCE(event_timestamp, '') FROM events WHERE external_id = ANY(%s)",
            (list(external_ids),),
        )
        status = _STATUSES
        return {row[0]: LedgerEntry(row[0], status[row[1]], *row[2:]) for row in rows}

    def first_seen(self, rows: Sequence[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
        """As `SqliteLedger.first_seen`: repeats within this run, from a temporary table."""
        first = _first_places(rows)
        sources = self._seen_sources
        keys = list(first)
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO seen SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::int[],"
                " %s::text[]) ON CONFLICT DO NOTHING",
                (
                    [hash(k) for k in keys],
                    [_check(k) for k in keys],
                    [sources.setdefault(first[k][0], len(sources)) for k in keys],
                    [first[k][1] for k in keys],
                ),
            )
            inserted = cur.rowcount
        if inserted < len(first):
            by_hash = {hash(k): k for k in keys}
            hits = self._execute(
                "SELECT h, crc, source, position FROM seen WHERE h = ANY(%s)", (list(by_hash),)
            )
            _note_earlier(first, hits, by_hash, list(sources))
        return _repeats(rows, first)

    # --- sending -----------------------------------------------------------------

    def mark_in_flight(
        self, run_id: str, events: Sequence[Event], *, mapping_hash: str, claim_s: float
    ) -> set[str]:
        """Claim these events for this run as `in_flight`; return the ids it got.

        An event is left out when another live run holds it, or when another run settled
        it since it was planned: that run sends it (or did), this one must not. A run
        that ended (or is unknown) holds nothing; a live run's claim lapses only when its
        heartbeat stops. Raises LedgerError when this run was itself taken for dead.
        """
        if not events:
            return set()
        # Rows are locked in one order by every run, so that two claims do not deadlock.
        ordered = sorted(events, key=lambda e: e.external_id)
        now = time.time()
        params = (
            mapping_hash,
            run_id,
            run_id,
            claim_s,
            now,
            now,
            now,
            [e.external_id for e in ordered],
            [str(e.kind) for e in ordered],
            [e.source for e in ordered],
            [e.position for e in ordered],
            [e.timestamp for e in ordered],
            [e.payload_hash for e in ordered],
            list(_CLAIMABLE),
            run_id,
        )
        for tries_left in range(_CLAIM_TRIES - 1, -1, -1):
            try:
                with self._transaction(reraise=True) as cur:
                    cur.execute("SELECT state FROM runs WHERE run_id = %s FOR SHARE", (run_id,))
                    row = cur.fetchone()
                    if row is None or row[0] != "running":
                        raise _taken_for_dead(run_id)
                    cur.execute(_CLAIM, params)
                    return {row[0] for row in cur.fetchall()}
            except psycopg.errors.DeadlockDetected as exc:
                if not tries_left:
                    raise self._failed(exc) from None
        raise AssertionError("unreachable")

    def record_outcomes(
        self,
        run_id: str,
        outcomes: Sequence[tuple[Event, Outcome]],
        attempts: Sequence[Attempt],
    ) -> None:
        """Record final answers and every attempt, in one transaction."""
        now = time.time()
        with self._transaction() as cur:
            if attempts:
                cur.executemany(
                    "INSERT INTO attempts (run_id, external_id, attempt, outcome, http_status,"
                    " code, message, sent_at, answered_at, latency_ms)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            run_id,
                            a.external_id,
                            a.attempt,
                            a.outcome,
                            a.http_status,
                            a.code or None,
                            a.message or None,
                            a.sent_at,
                            a.answered_at,
                            a.latency_ms,
                        )
                        for a in attempts
                    ],
                )
            if outcomes:
                cur.executemany(
                    "UPDATE events SET status = %s,"
                    " plain_event_id = COALESCE(%s, plain_event_id),"
                    " plain_customer_id = COALESCE(%s, plain_customer_id),"
                    " attempts = attempts + %s, code = %s, message = %s,"
                    " delivered_by = CASE WHEN %s THEN %s ELSE delivered_by END,"
                    # A claim another run took since (this one's had lapsed) stays its own.
                    " claimed_until = CASE WHEN claimed_by = %s THEN NULL ELSE claimed_until END,"
                    " claimed_by = CASE WHEN claimed_by = %s THEN NULL ELSE claimed_by END,"
                    " updated_at = %s, sent_at = %s, answered_at = %s, latency_ms = %s"
                    " WHERE external_id = %s",
                    [
                        (
                            str(o.status),
                            o.plain_event_id or None,
                            o.plain_customer_id or None,
                            o.attempts,
                            o.code or None,
                            o.message or None,
                            o.status in (Status.DELIVERED, Status.ALREADY_EXISTED),
                            run_id,
                            run_id,
                            run_id,
                            now,
                            o.sent_at or None,
                            o.answered_at or None,
                            o.latency_ms or None,
                            e.external_id,
                        )
                        for e, o in outcomes
                    ],
                )

    def customers(self, identifiers: Iterable[str]) -> dict[str, CustomerRecord]:
        """Upsert outcomes recorded for these customers (`emailAddress:ada@x.example`...)."""
        rows = self._execute(
            "SELECT identifier, status, COALESCE(plain_customer_id, ''), COALESCE(code, ''),"
            " COALESCE(message, '') FROM customers WHERE identifier = ANY(%s)",
            (list(identifiers),),
        )
        return {row[0]: CustomerRecord(row[0], Status(row[1]), *row[2:]) for row in rows}

    def first_customer_sighting(self, identifier: str) -> bool:
        """Whether this run meets the customer for the first time (a temp table, like `seen`)."""
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO seen_customers VALUES (%s) ON CONFLICT DO NOTHING", (identifier,)
            )
            return cur.rowcount == 1


#: The rows a run holds, in one order, locked: its heartbeat and its end take them so.
_HELD_BY: Final = (
    "SELECT external_id FROM events WHERE claimed_by = %s ORDER BY external_id FOR UPDATE"
)

#: One statement claims a batch: new rows are inserted, known ones taken when claimable.
_CLAIM: Final = (
    "INSERT INTO events AS e (external_id, status, kind, source, position,"
    " event_timestamp, payload_hash, mapping_hash, run_id, claimed_by,"
    " claimed_until, created_at, updated_at, sent_at)"
    f" SELECT i, 'in_flight', k, s, p, t, ph, %s, %s, %s, {_NOW} + %s, %s, %s, %s"
    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
    " %s::text[]) AS n(i, k, s, p, t, ph)"
    " ON CONFLICT (external_id) DO UPDATE SET status = 'in_flight',"
    " source = excluded.source, position = excluded.position,"
    " event_timestamp = excluded.event_timestamp,"
    " payload_hash = excluded.payload_hash, mapping_hash = excluded.mapping_hash,"
    " run_id = excluded.run_id, claimed_by = excluded.claimed_by,"
    " claimed_until = excluded.claimed_until, updated_at = excluded.updated_at,"
    " sent_at = excluded.sent_at"
    " WHERE e.status = ANY(%s) AND (e.claimed_by IS NULL OR e.claimed_by = %s"
    f" OR e.claimed_until < {_NOW}"
    # A run that visibly ended holds nothing. (Not "no running run is seen": the subquery
    # reads the statement's snapshot, which may predate a run that started since.)
    " OR EXISTS (SELECT 1 FROM runs r WHERE r.run_id = e.claimed_by"
    " AND r.state <> 'running'))"
    " RETURNING external_id"
)


def _taken_for_dead(run_id: str) -> LedgerError:
    return LedgerError(
        f"run {run_id} was taken for dead by another run (no heartbeat for "
        f"{STALE_AFTER_S:g} s), which may now send its rows: this run stops; run again to "
        "resume"
    )


def _reason(exc: psycopg.Error, url: str) -> str:
    """The first line of the driver's message, with the URL's password masked."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        password = psycopg.conninfo.conninfo_to_dict(conninfo(url)).get("password")
    except psycopg.Error:  # a URL libpq cannot read: its message names no password
        return text
    return text.replace(str(password), "***") if password else text


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
