"""What both kinds of ledger do, written once over a few primitives of each kind.

A kind (SQLite, PostgreSQL) gives a connection's transactions and statements, as
`Transaction`s over its driver's cursor, and its `Statements`. Everything else, from
recording a run to claiming rows and reading them back, is here.

It is what makes a run resumable without duplicates: an event is recorded `in_flight`
(committed) before its request goes out and its answer after it arrives.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol, Self

from backfill.errors import LedgerError
from backfill.ledger.schema import MIGRATIONS, SCHEMA_VERSION, split_statements
from backfill.ledger.statements import CLAIMABLE, Params, Statement, Statements
from backfill.models import (
    Attempt,
    CustomerRecord,
    Event,
    Invalid,
    LedgerEntry,
    Outcome,
    RunRecord,
    Status,
)

#: Where runs share a ledger, one whose heartbeat is older than this is taken for dead:
#: its claims are taken over.
STALE_AFTER_S: Final = 60.0
_STATUSES: Final = {str(status): status for status in Status}


class Cursor(Protocol):
    """What the ledger asks of a DB-API cursor (sqlite3's, psycopg's)."""

    @property
    def description(self) -> Any: ...

    @property
    def rowcount(self) -> int: ...

    # `Any`: psycopg types its SQL as a literal string; the ledger's is built at run time.
    def execute(self, query: Any, params: Any = ..., /) -> object: ...

    def executemany(self, query: Any, params_seq: Any, /) -> object: ...

    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class Result:
    """What one statement gave: its column names, its rows, the rows it changed."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    rowcount: int


class Transaction:
    """Statements run in one transaction (or one statement on its own)."""

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def execute(self, statement: Statement, params: Params = ()) -> Result:
        cur = self._cursor
        cur.execute(statement.text, statement.bind(params))
        if cur.description is None:  # it gives no rows
            return Result([], [], cur.rowcount)
        return Result([d[0] for d in cur.description], cur.fetchall(), cur.rowcount)

    def execute_many(self, statement: Statement, rows: Sequence[Params]) -> None:
        self._cursor.executemany(statement.text, statement.bind_each(rows))


class LedgerBase(ABC):
    """A ledger; a kind gives `path`, `sql` and the primitives below."""

    path: str
    #: The statements in the kind's dialect.
    sql: ClassVar[Statements]

    def __init__(self) -> None:
        self._seen_sources: dict[str, int] = {}
        # Planning looks chunks up from a worker thread while the loop records outcomes:
        # every statement, and every transaction as a whole, holds this lock.
        self._mutex = threading.RLock()

    # --- primitives ----------------------------------------------------------------

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Transaction]:
        """One atomic unit; a database failure becomes a LedgerError naming the ledger."""

    def _statement(self) -> AbstractContextManager[Transaction]:
        """Where one statement runs on its own (by default, in a transaction of its own)."""
        return self._transaction()

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _announce(self, run_id: str) -> None:
        """Make it known, where the kind has a way, that `run_id` uses the ledger now."""

    @abstractmethod
    def _before_end(self) -> None:
        """Make sure that a run's end can be recorded (connect again, where the kind may)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, statement: Statement, params: Params = ()) -> Result:
        with self._statement() as tx:
            return tx.execute(statement, params)

    def _unpacked(self, statement: Statement, params: Params) -> list[Sequence[Any]]:
        """The rows of a `Dialect.packed` select."""
        return self.sql.dialect.unpack(self._execute(statement, params).rows)

    # --- schema --------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        with self._transaction() as tx:
            return self._version(tx)

    def _version(self, tx: Transaction) -> int:
        if not tx.execute(self.sql.has_schema_version).rows[0][0]:
            return 0
        found = tx.execute(self.sql.schema_version).rows
        return int(found[0][0]) if found else 0

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{self.path} was written by a newer plain-backfill (schema {version}, this "
                f"version knows {SCHEMA_VERSION}); upgrade plain-backfill"
            )

    def _upgrade(self, tx: Transaction, version: int) -> None:
        """Migrate from `version` to the next one, in the caller's transaction."""
        dialect = self.sql.dialect
        for statement in split_statements(dialect.ddl(MIGRATIONS[version])):
            tx.execute(dialect.statement(statement))
        tx.execute(self.sql.clear_schema_version)
        tx.execute(self.sql.set_schema_version, {"version": version + 1})

    def _create_seen(self, tx: Transaction) -> None:
        """The temporary tables of what this run has seen (`first_seen`...)."""
        tx.execute(self.sql.create_seen)
        tx.execute(self.sql.create_seen_customers)

    # --- runs ----------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        rows = self._execute(self.sql.meta, {"key": key}).rows
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._execute(self.sql.set_meta, {"key": key, "value": value})

    def runs(self) -> list[RunRecord]:
        return [RunRecord(*row) for row in self._execute(self.sql.runs).rows]

    def start_run(
        self,
        run_id: str,
        *,
        options: Mapping[str, Any],
        mapping_hash: str,
        id_rule: str,
        id_format_version: int,
    ) -> None:
        """Record a new run, and end the runs that died (where runs share the ledger, those
        whose heartbeat stopped: their claims lapse)."""
        self._announce(run_id)
        params = {
            "run_id": run_id,
            "now": time.time(),
            "stale_after_s": STALE_AFTER_S,
            "options": json.dumps(options),
            "mapping_hash": mapping_hash,
            "id_rule": id_rule,
            "id_format_version": id_format_version,
        }
        with self._transaction() as tx:
            tx.execute(self.sql.end_dead_runs, params)
            tx.execute(self.sql.start_run, params)
            if not self.sql.dialect.concurrent:
                # No other process uses this ledger: claims of earlier runs are dead and
                # taken over at once.
                tx.execute(self.sql.release_claims)

    def end_run(
        self,
        run_id: str,
        *,
        state: str,
        exit_code: int,
        counts: Mapping[str, Any],
        workspace_id: str,
    ) -> None:
        """Record the run's end; where runs share the ledger, drop its claims, so that the
        next run takes them at once."""
        self._before_end()
        params = {
            "run_id": run_id,
            "now": time.time(),
            "state": state,
            "exit_code": exit_code,
            "counts": json.dumps(counts),
            "workspace_id": workspace_id or None,
        }
        with self._transaction() as tx:
            tx.execute(self.sql.end_run, params)
            if self.sql.dialect.concurrent:
                tx.execute(self.sql.release_held, params)

    def heartbeat(self, run_id: str) -> None:
        """Keep this run alive, and its claims with it.

        Where runs share the ledger, raises LedgerError when another run has taken this
        one for dead (no heartbeat for `STALE_AFTER_S`): its rows may be claimed by others
        now, so it must not go on.
        """
        params = {"run_id": run_id, "now": time.time(), "claim_s": STALE_AFTER_S}
        with self._transaction() as tx:
            beat = tx.execute(self.sql.heartbeat, params)
            if self.sql.dialect.concurrent:
                if beat.rowcount != 1:
                    raise _taken_for_dead(run_id)
                tx.execute(self.sql.renew_held, params)

    # --- planning ------------------------------------------------------------------

    def lookup(self, external_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """What the ledger holds for these ids: one statement for them all."""
        ids = self.sql.dialect.bind_list(external_ids)
        status = _STATUSES
        return {
            row[0]: LedgerEntry(row[0], status[row[1]], *row[2:])
            for row in self._unpacked(self.sql.lookup, {"ids": ids})
        }

    def first_seen(self, rows: Sequence[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
        """Mark (id, source, position) as seen in this run; say where repeated ids were first seen.

        Duplicate detection goes through a temporary table, not an unbounded in-memory set.
        The common case (no repeat) costs one statement and no query. The table is keyed
        by `hash(id)` (stable within the process, as long as the table lives) and holds a
        CRC-32 of the id beside it, so two ids are taken for one only when 96 bits agree;
        its rows stay small enough for a million of them to fit SQLite's cache. The
        statement touches the temporary table only, so a read-only ledger takes it too.
        """
        first = _first_places(rows)
        sources = self._seen_sources
        marks = [
            (hash(k), _check(k), sources.setdefault(source, len(sources)), position)
            for k, (source, position) in first.items()
        ]
        dialect = self.sql.dialect
        inserted = self._execute(self.sql.see, dialect.bind_rows("rows", marks, 4)).rowcount
        if inserted < len(first):
            # Some ids were seen in an earlier chunk: the table holds where.
            by_hash = {hash(k): k for k in first}
            hits = self._unpacked(self.sql.seen_before, {"ids": dialect.bind_list(by_hash)})
            _note_earlier(first, hits, by_hash, list(sources))
        return _repeats(rows, first)

    # --- sending -------------------------------------------------------------------

    def mark_in_flight(
        self, run_id: str, events: Sequence[Event], *, mapping_hash: str, claim_s: float
    ) -> set[str]:
        """Commit these events as `in_flight`, claimed by this run, before they are sent;
        return the ids it got.

        Where one process holds the ledger, that is all of them. Where runs share it, an
        event is left out when another live run holds it, or when another run settled it
        since it was planned: that run sends it (or did), this one must not. A run that
        ended (or is unknown) holds nothing; a live run's claim lapses only when its
        heartbeat stops. Raises LedgerError when this run was itself taken for dead.
        """
        if not events:
            return set()
        dialect = self.sql.dialect
        # Where runs share the ledger, every run locks rows in one order, so that two
        # claims do not deadlock.
        ordered = sorted(events, key=lambda e: e.external_id) if dialect.concurrent else events
        rows = [
            (e.external_id, str(e.kind), e.source, e.position, e.timestamp, e.payload_hash)
            for e in ordered
        ]
        common = {
            "run_id": run_id,
            "mapping_hash": mapping_hash,
            "claim_s": claim_s,
            "now": time.time(),
            "claimable": dialect.bind_list(CLAIMABLE),
        }
        taken = self._claim(run_id, dialect.bind_batch("rows", rows, 6, common))
        return taken if dialect.concurrent else {e.external_id for e in events}

    def _claim(self, run_id: str, batch: Sequence[Mapping[str, Any]]) -> set[str]:
        with self._transaction() as tx:
            return self._claim_in(tx, run_id, batch)

    def _claim_in(
        self, tx: Transaction, run_id: str, batch: Sequence[Mapping[str, Any]]
    ) -> set[str]:
        """Claim the batch's rows; where runs share the ledger, say which this run got."""
        if not self.sql.dialect.concurrent:
            tx.execute_many(self.sql.claim, batch)
            return set()
        state = tx.execute(self.sql.run_state, {"run_id": run_id}).rows
        if not state or state[0][0] != "running":
            raise _taken_for_dead(run_id)
        return {row[0] for params in batch for row in tx.execute(self.sql.claim, params).rows}

    def record_outcomes(
        self,
        run_id: str,
        outcomes: Sequence[tuple[Event, Outcome]],
        attempts: Sequence[Attempt],
    ) -> None:
        """Record final answers and every attempt, in one transaction."""
        now = time.time()
        with self._transaction() as tx:
            if attempts:
                tx.execute_many(self.sql.add_attempt, [_attempt(run_id, a) for a in attempts])
            if outcomes:
                tx.execute_many(self.sql.settle, [_settled(run_id, e, o, now) for e, o in outcomes])

    def record_attempts(self, run_id: str, attempts: Sequence[Attempt]) -> None:
        """Attempts that belong to no event (a customer upsert's requests)."""
        self.record_outcomes(run_id, [], attempts)

    def record_issues(self, run_id: str, issues: Sequence[tuple[Invalid, Status]]) -> None:
        """Rows that never became an event: invalid ones and duplicates in the source."""
        if not issues:
            return
        now = time.time()
        rows = [
            {
                "run_id": run_id,
                "source": issue.source,
                "position": issue.position,
                "status": str(status),
                "external_id": issue.external_id or None,
                "column_name": issue.problem.column or None,
                "code": issue.problem.code,
                "message": issue.problem.message,
                "now": now,
            }
            for issue, status in issues
        ]
        with self._transaction() as tx:
            tx.execute_many(self.sql.add_issue, rows)

    def customers(self, identifiers: Iterable[str]) -> dict[str, CustomerRecord]:
        """Upsert outcomes recorded for these customers (`emailAddress:ada@x.example`...)."""
        ids = self.sql.dialect.bind_list(identifiers)
        return {
            row[0]: CustomerRecord(row[0], Status(row[1]), *row[2:])
            for row in self._unpacked(self.sql.customers, {"ids": ids})
        }

    def record_customer(self, run_id: str, record: CustomerRecord, result: str = "") -> None:
        """Record one customer's upsert outcome (one row per customer, the latest wins)."""
        self._execute(
            self.sql.add_customer,
            {
                "identifier": record.identifier,
                "status": str(record.status),
                "plain_customer_id": record.plain_customer_id or None,
                "result": result or None,
                "code": record.code or None,
                "message": record.message or None,
                "run_id": run_id,
                "now": time.time(),
            },
        )

    def first_customer_sighting(self, identifier: str) -> bool:
        """Whether this run meets the customer for the first time (a temp table, like `seen`)."""
        return self._execute(self.sql.see_customer, {"identifier": identifier}).rowcount == 1

    # --- reading -------------------------------------------------------------------

    def status_counts(self) -> dict[str, int]:
        return {str(status): int(n) for status, n in self._execute(self.sql.status_counts).rows}

    def event(self, external_id: str) -> dict[str, Any] | None:
        found = self._execute(self.sql.event, {"external_id": external_id})
        return dict(zip(found.columns, found.rows[0], strict=True)) if found.rows else None

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Rows of a read (reports, tests): `?` placeholders with a sequence of values,
        `:name` ones with a mapping.

        >>> ledger.query("SELECT COUNT(*) FROM events WHERE status = :s", {"s": "delivered"})
        [(2400,)]
        """
        dialect = self.sql.dialect
        mapped = isinstance(params, Mapping)
        return self._execute(
            dialect.statement(sql) if mapped else dialect.positional(sql), params
        ).rows


def _attempt(run_id: str, a: Attempt) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "external_id": a.external_id,
        "attempt": a.attempt,
        "outcome": a.outcome,
        "http_status": a.http_status,
        "code": a.code or None,
        "message": a.message or None,
        "sent_at": a.sent_at,
        "answered_at": a.answered_at,
        "latency_ms": a.latency_ms,
    }


def _settled(run_id: str, e: Event, o: Outcome, now: float) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "external_id": e.external_id,
        "status": str(o.status),
        "plain_event_id": o.plain_event_id or None,
        "plain_customer_id": o.plain_customer_id or None,
        "attempts": o.attempts,
        "code": o.code or None,
        "message": o.message or None,
        "delivered": o.status in (Status.DELIVERED, Status.ALREADY_EXISTED),
        "now": now,
        "sent_at": o.sent_at or None,
        "answered_at": o.answered_at or None,
        "latency_ms": o.latency_ms or None,
    }


def _taken_for_dead(run_id: str) -> LedgerError:
    return LedgerError(
        f"run {run_id} was taken for dead by another run (no heartbeat for "
        f"{STALE_AFTER_S:g} s), which may now send its rows: this run stops; run again to "
        "resume"
    )


def _first_places(rows: Sequence[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
    """Each id's first (source, position) among `rows` (id, source, position)."""
    first: dict[str, tuple[str, str]] = {}
    for ext_id, source, position in rows:
        first.setdefault(ext_id, (source, position))
    return first


def _note_earlier(
    first: dict[str, tuple[str, str]],
    hits: Iterable[Sequence[Any]],
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
