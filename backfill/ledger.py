"""The SQLite ledger: one row per event, per row issue, per attempt and per run.

It is what makes a run resumable without duplicates: an event is recorded
`in_flight` (committed, WAL mode) before its request goes out and its answer after
it arrives. One process holds a SQLite ledger at a time (a lock file beside it), so
a resume after a crash takes over the dead run's claims at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

from backfill.errors import LedgerBusy, LedgerError
from backfill.models import (
    Attempt,
    CustomerRecord,
    Event,
    Invalid,
    Ledger,
    LedgerEntry,
    Outcome,
    RunRecord,
    Status,
)

__all__ = [
    "SCHEMA_VERSION",
    "CustomerRecord",
    "Ledger",
    "LedgerBase",
    "RunRecord",
    "SqliteLedger",
    "is_postgres_url",
    "open_ledger",
]

SCHEMA_VERSION: Final = 4
_LOOKUP_BATCH: Final = 500
#: A PostgreSQL URL, with or without SQLAlchemy's driver (`postgresql+psycopg://`).
_DRIVER: Final = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")
#: SQLAlchemy's URL of a SQLite file: `sqlite:///relative.db`, `sqlite:////abs/path.db`.
_SQLITE_URL: Final = re.compile(r"sqlite(?:\+\w+)?:///(.+)\Z")
_STATUSES: Final = {str(status): status for status in Status}

#: Forward migrations: index i upgrades a ledger from version i to i + 1.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        ended_at REAL,
        heartbeat_at REAL,
        state TEXT NOT NULL,
        exit_code INTEGER,
        options TEXT NOT NULL,
        mapping_hash TEXT NOT NULL,
        id_rule TEXT NOT NULL,
        id_format_version INTEGER NOT NULL,
        workspace_id TEXT,
        counts TEXT
    );
    CREATE TABLE events (
        external_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        kind TEXT NOT NULL,
        plain_event_id TEXT,
        plain_customer_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        code TEXT,
        message TEXT,
        source TEXT NOT NULL,
        position TEXT NOT NULL,
        event_timestamp TEXT,
        payload_hash TEXT NOT NULL,
        mapping_hash TEXT NOT NULL,
        run_id TEXT NOT NULL,
        delivered_by TEXT,
        claimed_by TEXT,
        claimed_until REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        sent_at REAL,
        answered_at REAL,
        latency_ms REAL
    );
    CREATE INDEX events_status ON events (status);
    CREATE TABLE row_issues (
        run_id TEXT NOT NULL,
        source TEXT NOT NULL,
        position TEXT NOT NULL,
        status TEXT NOT NULL,
        external_id TEXT,
        column_name TEXT,
        code TEXT,
        message TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, source, position)
    );
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        external_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        http_status INTEGER,
        code TEXT,
        message TEXT,
        sent_at REAL NOT NULL,
        answered_at REAL NOT NULL,
        latency_ms REAL NOT NULL
    );
    CREATE INDEX attempts_event ON attempts (external_id);
    """,
    """
    CREATE TABLE customers (
        identifier TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        plain_customer_id TEXT,
        result TEXT,
        code TEXT,
        message TEXT,
        run_id TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    """
    CREATE INDEX events_claimed ON events (claimed_by) WHERE claimed_by IS NOT NULL;
    """,
    # `status` and `export`: a source row's latest issue, and whether it became an event.
    """
    CREATE INDEX events_place ON events (source, position);
    CREATE INDEX row_issues_place ON row_issues (source, position, created_at);
    """,
)


class LedgerBase(ABC):
    """What both ledgers do with the same SQL: `?` placeholders, run by `_execute`.

    A ledger kind gives `path` and the abstract methods: running SQL, and recording answers.
    """

    path: str

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row `sql` gives."""
        return self._execute_described(sql, params)[1]

    @abstractmethod
    def _execute_described(
        self, sql: str, params: Sequence[Any] = ()
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The column names and every row `sql` gives."""

    @abstractmethod
    def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """`sql` once per row of parameters, in one transaction."""

    @abstractmethod
    def record_outcomes(
        self,
        run_id: str,
        outcomes: Sequence[tuple[Event, Outcome]],
        attempts: Sequence[Attempt],
    ) -> None:
        """Record final answers and every attempt, in one transaction."""

    def meta(self, key: str) -> str | None:
        rows = self._execute("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def runs(self) -> list[RunRecord]:
        rows = self._execute(
            "SELECT run_id, state, mapping_hash, id_rule, id_format_version FROM runs "
            "ORDER BY started_at"
        )
        return [RunRecord(*row) for row in rows]

    def record_issues(self, run_id: str, issues: Sequence[tuple[Invalid, Status]]) -> None:
        """Rows that never became an event: invalid ones and duplicates in the source."""
        if not issues:
            return
        now = time.time()
        self._execute_many(
            "INSERT INTO row_issues (run_id, source, position, status, external_id,"
            " column_name, code, message, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, source, position) DO UPDATE SET status = excluded.status,"
            " external_id = excluded.external_id, column_name = excluded.column_name,"
            " code = excluded.code, message = excluded.message, created_at = excluded.created_at",
            [
                (
                    run_id,
                    issue.source,
                    issue.position,
                    str(status),
                    issue.external_id or None,
                    issue.problem.column or None,
                    issue.problem.code,
                    issue.problem.message,
                    now,
                )
                for issue, status in issues
            ],
        )

    def record_customer(self, run_id: str, record: CustomerRecord, result: str = "") -> None:
        """Record one customer's upsert outcome (one row per customer, the latest wins)."""
        self._execute(
            "INSERT INTO customers (identifier, status, plain_customer_id, result, code,"
            " message, run_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (identifier) DO UPDATE SET status = excluded.status,"
            " plain_customer_id = excluded.plain_customer_id, result = excluded.result,"
            " code = excluded.code, message = excluded.message, run_id = excluded.run_id,"
            " updated_at = excluded.updated_at",
            (
                record.identifier,
                str(record.status),
                record.plain_customer_id or None,
                result or None,
                record.code or None,
                record.message or None,
                run_id,
                time.time(),
            ),
        )

    def record_attempts(self, run_id: str, attempts: Sequence[Attempt]) -> None:
        """Attempts that belong to no event (a customer upsert's requests)."""
        self.record_outcomes(run_id, [], attempts)

    def status_counts(self) -> dict[str, int]:
        rows = self._execute("SELECT status, COUNT(*) FROM events GROUP BY status")
        return {str(status): int(n) for status, n in rows}

    def event(self, external_id: str) -> dict[str, Any] | None:
        names, rows = self._execute_described(
            "SELECT * FROM events WHERE external_id = ?", (external_id,)
        )
        return dict(zip(names, rows[0], strict=True)) if rows else None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read-only access for reports and tests (`?` placeholders)."""
        return self._execute(sql, params)


class SqliteLedger(LedgerBase):
    """A ledger in one SQLite file. Open it with `SqliteLedger.open(path)`."""

    def __init__(self, path: str, conn: sqlite3.Connection, lock: IO[str] | None) -> None:
        self.path = path
        self._conn = conn
        self._lock = lock
        self._seen_sources: dict[str, int] = {}
        # Planning looks chunks up from a worker thread while the loop records outcomes:
        # every statement, and every transaction as a whole, holds this lock.
        self._mutex = threading.RLock()

    @classmethod
    def open(cls, path: str) -> SqliteLedger:
        """Open (creating and migrating as needed) and lock the ledger at `path`."""
        file = Path(path)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            lock = open(f"{path}.lock", "a+", encoding="utf-8")  # noqa: SIM115 - held open
        except OSError as exc:
            raise LedgerError(f"cannot create the ledger at {path}: {exc.strerror}") from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise LedgerBusy(
                f"the ledger {path} is in use by {holder}; wait for it to finish, or stop it"
            ) from None
        return cls._connect(path, path, lock, writable=True)

    @classmethod
    def open_readonly(cls, path: str) -> SqliteLedger:
        """Read a ledger without changing it (dry runs, validate).

        A missing ledger reads as empty and is not created. While no run holds the
        ledger (and no crash left a -wal file) it is opened immutable, so not even
        SQLite's shared-memory files appear beside it.
        """
        if not Path(path).exists():
            return cls.scratch(label=path)
        # immutable skips SQLite's locking and its -wal file: only safe when no run holds
        # the ledger and no crash left committed pages in a -wal file.
        quiet = not _held(path) and not Path(f"{path}-wal").exists()
        mode = "immutable=1" if quiet else "mode=ro"
        target = f"{Path(path).resolve().as_uri()}?{mode}"
        return cls._connect(path, target, None, writable=False)

    @classmethod
    def scratch(cls, *, label: str = "scratch") -> SqliteLedger:
        """An empty ledger in a private temporary file SQLite deletes on close.

        On disk, not in memory, so the ids seen in a big source do not fill the RAM.
        """
        return cls._connect(label, "", None, writable=True)

    @classmethod
    def _connect(
        cls, path: str, target: str, lock: IO[str] | None, *, writable: bool
    ) -> SqliteLedger:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                target,
                isolation_level=None,
                check_same_thread=False,
                uri=target.startswith("file:"),
            )
            if writable:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            # The ids seen in this run: on disk, not an unbounded set in memory. Its rollback
            # journal is off (it tripled the cost of an insert): the table lives only as long
            # as the run, and a failed write stops the run anyway.
            conn.execute("PRAGMA temp.cache_size = -32768")
            conn.execute("PRAGMA temp.journal_mode = OFF")
            # Keyed by the id's hash (a rowid): inserting text keys cost twice as much.
            conn.execute(
                "CREATE TEMP TABLE seen (h INTEGER PRIMARY KEY, crc INTEGER NOT NULL,"
                " source INTEGER NOT NULL, position TEXT NOT NULL)"
            )
            conn.execute(
                "CREATE TEMP TABLE seen_customers (identifier TEXT PRIMARY KEY) WITHOUT ROWID"
            )
            ledger = cls(path, conn, lock)
            if writable:
                ledger._migrate()
            elif ledger.schema_version > SCHEMA_VERSION:
                raise LedgerError(f"{path} was written by a newer plain-backfill; upgrade it")
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if lock is not None:
                lock.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise LedgerError(f"{path} is not a usable ledger: {exc}") from None
            raise
        return ledger

    def close(self) -> None:
        self._conn.close()
        if self._lock is not None:
            self._lock.close()

    def __enter__(self) -> SqliteLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema ------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        row = self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'"
        ).fetchone()
        if row is None:
            return 0
        found = self._conn.execute("SELECT version FROM schema_version").fetchone()
        return int(found[0]) if found else 0

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{self.path} was written by a newer plain-backfill (schema {version}, this "
                f"version knows {SCHEMA_VERSION}); upgrade plain-backfill"
            )
        for target in range(version, SCHEMA_VERSION):
            with self._transaction() as cur:
                for statement in _statements(MIGRATIONS[target]):
                    cur.execute(statement)
                cur.execute("DELETE FROM schema_version")
                cur.execute("INSERT INTO schema_version VALUES (?)", (target + 1,))

    @contextmanager
    def _transaction(self, *, immediate: bool = True) -> Iterator[sqlite3.Cursor]:
        """One atomic write; a database failure becomes a LedgerError naming the file."""
        with self._mutex:
            yield from self._transaction_held(immediate=immediate)

    def _transaction_held(self, *, immediate: bool) -> Iterator[sqlite3.Cursor]:
        try:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        try:
            yield cur
        except BaseException as exc:
            if self._conn.in_transaction:
                cur.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._failed(exc) from None
            raise
        else:
            try:
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._failed(exc) from None

    def _execute_described(
        self, sql: str, params: Sequence[Any] = ()
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The column names and every row `sql` gives."""
        with self._mutex:
            try:
                cur = self._conn.execute(sql, params)
                rows = cur.fetchall()
            except sqlite3.Error as exc:
                raise self._failed(exc) from None
            return [d[0] for d in cur.description or ()], rows

    def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._transaction() as cur:
            cur.executemany(sql, rows)

    def _where_in(self, sql: str, keys: Iterable[Any]) -> list[tuple[Any, ...]]:
        """Run `sql` (with `{marks}` in its IN list) for the keys, 500 at a time."""
        wanted = list(dict.fromkeys(keys))
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(wanted), _LOOKUP_BATCH):
            batch = wanted[start : start + _LOOKUP_BATCH]
            marks = ",".join("?" * len(batch))
            found += self._execute(sql.format(marks=marks), batch)
        return found

    def _failed(self, exc: sqlite3.Error) -> LedgerError:
        return LedgerError(f"the ledger {self.path} failed: {exc}; nothing more is sent")

    # --- runs --------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
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
        """Record a new run and end any run a crash left `running`."""
        now = time.time()
        if self._lock is not None:
            self._lock.seek(0)
            self._lock.truncate()
            self._lock.write(f"run {run_id} (pid {os.getpid()})")
            self._lock.flush()
        with self._transaction() as cur:
            cur.execute(
                "UPDATE runs SET state = 'crashed', ended_at = COALESCE(heartbeat_at, started_at) "
                "WHERE state = 'running'"
            )
            cur.execute(
                "INSERT INTO runs (run_id, started_at, heartbeat_at, state, options, mapping_hash,"
                " id_rule, id_format_version) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                (run_id, now, now, json.dumps(options), mapping_hash, id_rule, id_format_version),
            )
            # The lock file proves no other process uses this ledger: claims of earlier runs
            # are dead and taken over at once.
            cur.execute("UPDATE events SET claimed_by = NULL, claimed_until = NULL")

    def end_run(
        self,
        run_id: str,
        *,
        state: str,
        exit_code: int,
        counts: Mapping[str, Any],
        workspace_id: str,
    ) -> None:
        with self._transaction() as cur:
            cur.execute(
                "UPDATE runs SET ended_at = ?, state = ?, exit_code = ?, counts = ?,"
                " workspace_id = ?"
                " WHERE run_id = ?",
                (time.time(), state, exit_code, json.dumps(counts), workspace_id or None, run_id),
            )

    def heartbeat(self, run_id: str) -> None:
        with self._transaction() as cur:
            cur.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (time.time(), run_id))

    # --- planning ----------------------------------------------------------------

    def lookup(self, external_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """What the ledger holds for these ids: one statement and one row for them all.

        The ids go in, and the entries come out, as one JSON text each: SQLite then lets
        go of the GIL once per chunk, not once per row, so a lookup from a worker thread
        overlaps the caller's work instead of queueing behind it.
        """
        (found,) = self._execute(
            "SELECT json_group_array(json_array(external_id, status, payload_hash, mapping_hash,"
            " COALESCE(delivered_by, run_id), source, position, COALESCE(plain_event_id, ''),"
            " COALESCE(code, ''), COALESCE(message, ''), attempts,"
            " COALESCE(event_timestamp, ''))) FROM events"
            " WHERE external_id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(external_ids)),),
        )
        status = _STATUSES
        return {
            row[0]: LedgerEntry(row[0], status[row[1]], *row[2:]) for row in json.loads(found[0])
        }

    def first_seen(self, rows: Sequence[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
        """Mark (id, source, position) as seen in this run; say where repeated ids were first seen.

        Duplicate detection goes through a temporary table, not an unbounded in-memory set.
        The common case (no repeat) costs one statement and no query. The table is keyed
        by `hash(id)` (stable within the process, as long as the table lives) and holds a
        CRC-32 of the id beside it, so two ids are taken for one only when 96 bits agree;
        its rows stay small enough for a million of them to fit SQLite's cache.
        """
        first = _first_places(rows)
        sources = self._seen_sources
        marks = json.dumps(
            [
                (hash(k), _check(k), sources.setdefault(source, len(sources)), position)
                for k, (source, position) in first.items()
            ]
        )
        # One statement, atomic on its own, on the temp table only (so a read-only ledger
        # takes it too): a worker thread waits for the GIL once per statement.
        with self._mutex:
            before = self._conn.total_changes
            self._execute(
                "INSERT OR IGNORE INTO seen SELECT value->>0, value->>1, value->>2, value->>3"
                " FROM json_each(?)",
                (marks,),
            )
            inserted = self._conn.total_changes - before
        if inserted < len(first):
            # Some ids were seen in an earlier chunk: the table holds where.
            by_hash = {hash(k): k for k in first}
            hits = self._where_in(
                "SELECT h, crc, source, position FROM seen WHERE h IN ({marks})", by_hash
            )
            _note_earlier(first, hits, by_hash, list(sources))
        return _repeats(rows, first)

    # --- sending -----------------------------------------------------------------

    def mark_in_flight(
        self, run_id: str, events: Sequence[Event], *, mapping_hash: str, claim_s: float
    ) -> set[str]:
        """Commit these events as `in_flight`, claimed by this run, before they are sent.

        Returns the ids claimed: all of them, as one process holds a SQLite ledger.
        """
        now = time.time()
        with self._transaction() as cur:
            cur.executemany(
                "INSERT INTO events (external_id, status, kind, source, position, event_timestamp,"
                " payload_hash, mapping_hash, run_id, claimed_by, claimed_until, created_at,"
                " updated_at, sent_at) VALUES (?, 'in_flight', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (external_id) DO UPDATE SET status = 'in_flight',"
                " source = excluded.source, position = excluded.position,"
                " event_timestamp = excluded.event_timestamp, payload_hash = excluded.payload_hash,"
                " mapping_hash = excluded.mapping_hash, run_id = excluded.run_id,"
                " claimed_by = excluded.claimed_by, claimed_until = excluded.claimed_until,"
                " updated_at = excluded.updated_at, sent_at = excluded.sent_at",
                [
                    (
                        e.external_id,
                        str(e.kind),
                        e.source,
                        e.position,
                        e.timestamp,
                        e.payload_hash,
                        mapping_hash,
                        run_id,
                        run_id,
                        now + claim_s,
                        now,
                        now,
                        now,
                    )
                    for e in events
                ],
            )
        return {e.external_id for e in events}

    def record_outcomes(
        self,
        run_id: str,
        outcomes: Sequence[tuple[Event, Outcome]],
        attempts: Sequence[Attempt],
    ) -> None:
        """Record final answers and every attempt, in one transaction."""
        now = time.time()
        with self._transaction() as cur:
            cur.executemany(
                "INSERT INTO attempts (run_id, external_id, attempt, outcome, http_status, code,"
                " message, sent_at, answered_at, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            cur.executemany(
                "UPDATE events SET status = ?, plain_event_id = COALESCE(?, plain_event_id),"
                " plain_customer_id = COALESCE(?, plain_customer_id), attempts = attempts + ?,"
                " code = ?, message = ?, delivered_by = CASE WHEN ? THEN ? ELSE delivered_by END,"
                " claimed_by = NULL, claimed_until = NULL, updated_at = ?, sent_at = ?,"
                " answered_at = ?, latency_ms = ? WHERE external_id = ?",
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
        found: dict[str, CustomerRecord] = {}
        for row in self._where_in(
            "SELECT identifier, status, COALESCE(plain_customer_id, ''), COALESCE(code, ''),"
            " COALESCE(message, '') FROM customers WHERE identifier IN ({marks})",
            identifiers,
        ):
            found[row[0]] = CustomerRecord(row[0], Status(row[1]), *row[2:])
        return found

    def first_customer_sighting(self, identifier: str) -> bool:
        """Whether this run meets the customer for the first time (a temp table, like `seen`)."""
        with self._transaction(immediate=False) as cur:
            cur.execute("INSERT OR IGNORE INTO seen_customers VALUES (?)", (identifier,))
            return cur.rowcount == 1


def open_ledger(target: str, *, readonly: bool = False) -> Ledger:
    """The ledger a `--ledger` value names: a SQLite file, or a PostgreSQL database URL.

    A SQLite file may be given as a path or as SQLAlchemy's `sqlite:///path`; a URL of any
    other database is refused. `readonly` (dry runs, validate) reads the ledger as it is
    and creates nothing.
    """
    from backfill.config import is_url, mask_url

    if not is_postgres_url(target):
        if (file := _SQLITE_URL.match(target)) is not None:
            target = file.group(1)
        elif is_url(target):
            raise LedgerError(
                f"--ledger {mask_url(target)}: a ledger is a SQLite file (a path, or "
                "sqlite:///path) or a PostgreSQL database (postgresql+psycopg://...)"
            )
        return SqliteLedger.open_readonly(target) if readonly else SqliteLedger.open(target)
    try:
        from backfill.ledger_pg import PostgresLedger
    except ImportError as exc:
        raise LedgerError(
            f"a PostgreSQL ledger needs {exc.name}: pip install 'plain-backfill[sql]'"
        ) from None
    if readonly:
        ledger = PostgresLedger.open(target, migrate=False)
        if ledger.schema_version == 0:  # nothing recorded yet: it reads as empty
            ledger.close()
            return SqliteLedger.scratch(label=ledger.path)
        return ledger
    return PostgresLedger.open(target)


def is_postgres_url(target: str) -> bool:
    """Whether a `--ledger` value names a PostgreSQL database rather than a file.

    Here, not in `backfill.ledger_pg`: that one needs psycopg, an extra.
    """
    return _DRIVER.match(target) is not None


def _first_places(rows: Sequence[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
    """Each id's first (source, position) among `rows` (id, source, position)."""
    first: dict[str, tuple[str, str]] = {}
    for ext_id, source, position in rows:
        first.setdefault(ext_id, (source, position))
    return first


def _note_earlier(
    first: dict[str, tuple[str, str]],
    hits: Iterable[tuple[Any, ...]],
    by_hash: Mapping[int, str],
    sources: Sequence[str],
) -> None:
    """Where the seen table says ids were met before (rows of h, crc, source, position)."""
    for h, check, source_index, position in hits:
        ext_id = by_hash[h]
        if check == _check(ext_id):  # not another id with the same hash
            first[ext_id] = (sources[source_index], position)


def _repeats(
    rows: Sequence[tuple[str, str, str]], first: Mapping[str, tuple[str, str]]
) -> dict[str, tuple[str, str]]:
    """The rows whose id was first seen elsewhere, with where."""
    return {
        ext_id: first[ext_id]
        for ext_id, source, position in rows
        if first[ext_id] != (source, position)
    }


def _check(external_id: str) -> int:
    """A second, independent hash of an id: its CRC-32."""
    return zlib.crc32(external_id.encode("utf-8", "surrogatepass"))


def _held(path: str) -> bool:
    """Whether a live run holds the ledger at `path` (its lock file is locked)."""
    try:
        with open(f"{path}.lock", encoding="utf-8") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
