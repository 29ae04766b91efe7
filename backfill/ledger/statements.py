"""Every statement the ledger runs, written once, and the two dialects that say them.

A statement is written with `:name` placeholders. What SQLite and PostgreSQL say
differently is a `Dialect`'s few words: the placeholders themselves, the clock, how a
list or a table of rows is bound, and the claims that runs sharing a ledger need.
`Statements(dialect)` renders them all once, for the ledger kind that runs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final, TypeAlias

from backfill.ledger.schema import postgres_ddl

#: A `:name` placeholder (not PostgreSQL's `::type` cast).
_NAMED: Final = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

#: A statement's parameters: a mapping for `:name` placeholders, a sequence for `?` ones.
Params: TypeAlias = Mapping[str, Any] | Sequence[Any]


class Statement:
    """A statement in one dialect's words, and how its parameters reach the driver."""

    __slots__ = ("text", "_values")

    def __init__(self, text: str, names: Sequence[str] | None = None) -> None:
        self.text = text
        # Positional (SQLite's `?1`, `?2`...): sqlite3 binds a tuple faster than it looks
        # names up in a mapping, a difference the ledger's writes feel row by row.
        self._values: Callable[[Any], tuple[Any, ...]] | None
        if names is None:
            self._values = None
        elif not names:
            self._values = lambda params: ()
        elif len(names) == 1:
            (name,) = names
            self._values = lambda params: (params[name],)
        else:
            self._values = itemgetter(*names)

    def bind(self, params: Params) -> Params:
        """The parameters as the driver takes them for this text."""
        return params if self._values is None else self._values(params)

    def bind_each(self, rows: Iterable[Params]) -> Iterable[Params]:
        """`bind` of every parameter set of an `executemany`."""
        return rows if self._values is None else map(self._values, rows)

    def __repr__(self) -> str:
        return f"Statement({self.text!r})"


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one database says differently from the other; the rest of the SQL is shared."""

    #: Placeholders as psycopg takes them (`%(name)s`, `%s`) rather than sqlite3 (`:name`, `?`).
    pyformat: bool
    #: Lists go in, and rows come out, as one JSON text: SQLite then lets go of the GIL once
    #: per chunk, not once per row, so a worker thread's lookups overlap the caller's work.
    #: Otherwise as arrays and rows.
    json_lists: bool
    #: A batch of rows to write goes in one execution a row (SQLite: sqlite3 binds a row
    #: of VALUES faster than SQLite reads rows out of JSON or a SELECT) rather than as
    #: arrays in one execution (PostgreSQL: a round trip a row would cost more).
    row_by_row: bool
    #: The clock of runs and claims, in epoch seconds. SQLite's is the writer's (bound as
    #: `:now`); PostgreSQL's is the server's: the workers' clocks may disagree, its is one.
    clock: str
    #: Whether runs of several processes use the ledger at once. Then a row is claimed
    #: only when no live run holds it, rows are locked while claimed, and a run is taken
    #: for dead when its heartbeat stops. Otherwise (SQLite: its lock file lets one process
    #: in) every earlier run is dead when a run starts, and its claims are taken at once.
    concurrent: bool
    #: A 64-bit integer key (SQLite's `INTEGER PRIMARY KEY` is the rowid, its fastest key).
    int64: str
    #: How a temporary table of text keys is kept (SQLite: in its key's own b-tree).
    keyed_by_text: str
    #: One row, one value: whether the table `schema_version` exists.
    has_schema_version: str
    #: A migration of the schema (written in SQLite's words) in this dialect's words.
    ddl: Callable[[str], str]

    def statement(self, sql: str) -> Statement:
        """`sql`, with `:name` placeholders, in this dialect's words.

        >>> POSTGRES.statement("SELECT 1 WHERE a = :a AND b::text LIKE 'x%'")
        Statement("SELECT 1 WHERE a = %(a)s AND b::text LIKE 'x%%'")
        >>> SQLITE.statement("SELECT 1 WHERE a = :a OR b = :b OR :a IS NULL")
        Statement('SELECT 1 WHERE a = ?1 OR b = ?2 OR ?1 IS NULL')
        """
        if self.pyformat:
            return Statement(_NAMED.sub(r"%(\1)s", sql.replace("%", "%%")))
        names: dict[str, str] = {}

        def numbered(found: re.Match[str]) -> str:
            return names.setdefault(found.group(1), f"?{len(names) + 1}")

        return Statement(_NAMED.sub(numbered, sql), tuple(names))

    def positional(self, sql: str) -> Statement:
        """`sql`, with `?` placeholders, in this dialect's words (reports' and tests' reads)."""
        return Statement(sql.replace("?", "%s") if self.pyformat else sql)

    def any_of(self, name: str) -> str:
        """The test "is in the list bound as `name`" (bind it with `bind_list`)."""
        if self.json_lists:
            return f"IN (SELECT value FROM json_each(:{name}))"
        return f"= ANY(:{name})"

    def bind_list(self, values: Iterable[Any]) -> Any:
        return json.dumps(list(values)) if self.json_lists else list(values)

    def rows(self, name: str, *types: str) -> str:
        """A table `n` of the rows bound as `name` (with `bind_rows`), columns c0, c1...

        `types` are PostgreSQL's, one a column; SQLite takes the values as they come.
        """
        if self.json_lists:
            values = ", ".join(f"value->>{i} AS c{i}" for i in range(len(types)))
            return f"(SELECT {values} FROM json_each(:{name})) AS n"
        arrays = ", ".join(f":{name}_{i}::{kind}[]" for i, kind in enumerate(types))
        columns = ", ".join(f"c{i}" for i in range(len(types)))
        return f"unnest({arrays}) AS n({columns})"

    def bind_rows(self, name: str, rows: Sequence[Sequence[Any]], width: int) -> dict[str, Any]:
        if self.json_lists:
            return {name: json.dumps(rows)}
        return {f"{name}_{i}": [row[i] for row in rows] for i in range(width)}

    def batch(self, name: str, types: Sequence[str], values: str) -> str:
        """Where an INSERT takes the rows of a batch bound as `name` (with `bind_batch`):
        `values` is the row to insert, with `{0}`, `{1}`... for the batch's columns.

        >>> SQLITE.batch("rows", ("text", "int"), "{0}, 'new', {1} + 1")
        "VALUES (:rows_0, 'new', :rows_1 + 1)"
        >>> POSTGRES.batch("rows", ("text", "int"), "{0}, 'new', {1} + 1")
        "SELECT c0, 'new', c1 + 1 FROM unnest(:rows_0::text[], :rows_1::int[]) AS n(c0, c1)"
        """
        if self.row_by_row:
            return f"VALUES ({values.format(*(f':{name}_{i}' for i in range(len(types))))})"
        columns = (f"c{i}" for i in range(len(types)))
        return f"SELECT {values.format(*columns)} FROM {self.rows(name, *types)}"

    def bind_batch(
        self, name: str, rows: Sequence[Sequence[Any]], width: int, common: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """The parameter sets of a `batch`, each with the `common` parameters: one a row,
        or one for them all."""
        if self.row_by_row:
            keys = [f"{name}_{i}" for i in range(width)]
            return [dict(zip(keys, row, strict=True), **common) for row in rows]
        return [{**common, **self.bind_rows(name, rows, width)}]

    def packed(self, columns: str) -> str:
        """A select list that gives `columns` of every row (read back with `unpack`)."""
        return f"json_group_array(json_array({columns}))" if self.json_lists else columns

    def unpack(self, rows: list[tuple[Any, ...]]) -> list[Sequence[Any]]:
        return json.loads(rows[0][0]) if self.json_lists else list(rows)


SQLITE: Final = Dialect(
    pyformat=False,
    json_lists=True,
    row_by_row=True,
    clock=":now",
    concurrent=False,
    int64="INTEGER",
    keyed_by_text=" WITHOUT ROWID",
    has_schema_version=(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ),
    ddl=lambda script: script,
)

POSTGRES: Final = Dialect(
    pyformat=True,
    json_lists=False,
    row_by_row=False,
    clock="extract(epoch FROM clock_timestamp())",
    concurrent=True,
    int64="BIGINT",
    keyed_by_text="",
    has_schema_version="SELECT to_regclass('schema_version') IS NOT NULL",
    ddl=postgres_ddl,
)

#: What the planner needs of an event (`LedgerEntry`), in its order.
_ENTRY: Final = (
    "external_id, status, payload_hash, mapping_hash, COALESCE(delivered_by, run_id), source,"
    " position, COALESCE(plain_event_id, ''), COALESCE(code, ''), COALESCE(message, ''),"
    " attempts, COALESCE(event_timestamp, '')"
)
#: A customer's upsert outcome (`CustomerRecord`), in its order.
_CUSTOMER: Final = (
    "identifier, status, COALESCE(plain_customer_id, ''), COALESCE(code, ''), COALESCE(message, '')"
)
#: Claims may be taken over from rows in these states (never from settled ones).
CLAIMABLE: Final = ("in_flight", "retryable", "rejected", "invalid")


class Statements:
    """The ledger's statements in one dialect's words.

    Parameters are `:name`; `:now` is always the writer's `time.time()`.
    """

    def __init__(self, d: Dialect) -> None:
        self.dialect = d
        r = d.statement
        clock = d.clock
        # Rows a run holds, in one order, locked: its heartbeat and its end take them so.
        lock = " FOR UPDATE" if d.concurrent else ""
        held = (
            f"SELECT external_id FROM events WHERE claimed_by = :run_id ORDER BY external_id{lock}"
        )

        # --- schema ----------------------------------------------------------------
        self.has_schema_version = r(d.has_schema_version)
        self.schema_version = r("SELECT version FROM schema_version")
        self.clear_schema_version = r("DELETE FROM schema_version")
        self.set_schema_version = r("INSERT INTO schema_version VALUES (:version)")
        # The ids seen in this run: on disk, not an unbounded set in memory. Keyed by the
        # id's hash (a rowid in SQLite: inserting text keys cost twice as much).
        self.create_seen = r(
            f"CREATE TEMP TABLE seen (h {d.int64} PRIMARY KEY, crc {d.int64} NOT NULL,"
            " source INTEGER NOT NULL, position TEXT NOT NULL)"
        )
        self.create_seen_customers = r(
            f"CREATE TEMP TABLE seen_customers (identifier TEXT PRIMARY KEY){d.keyed_by_text}"
        )

        # --- runs ------------------------------------------------------------------
        self.meta = r("SELECT value FROM meta WHERE key = :key")
        self.set_meta = r(
            "INSERT INTO meta (key, value) VALUES (:key, :value)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        self.runs = r(
            "SELECT run_id, state, mapping_hash, id_rule, id_format_version FROM runs"
            " ORDER BY started_at"
        )
        stale = (
            f" AND COALESCE(heartbeat_at, started_at) < {clock} - :stale_after_s"
            if d.concurrent
            else ""
        )
        self.end_dead_runs = r(
            "UPDATE runs SET state = 'crashed', ended_at = COALESCE(heartbeat_at, started_at)"
            f" WHERE state = 'running'{stale}"
        )
        self.start_run = r(
            "INSERT INTO runs (run_id, started_at, heartbeat_at, state, options, mapping_hash,"
            f" id_rule, id_format_version) VALUES (:run_id, {clock}, {clock}, 'running',"
            " :options, :mapping_hash, :id_rule, :id_format_version)"
        )
        self.end_run = r(
            f"UPDATE runs SET ended_at = {clock}, state = :state, exit_code = :exit_code,"
            " counts = :counts, workspace_id = :workspace_id WHERE run_id = :run_id"
        )
        live = " AND state = 'running'" if d.concurrent else ""
        self.heartbeat = r(f"UPDATE runs SET heartbeat_at = {clock} WHERE run_id = :run_id{live}")
        # Where runs share the ledger, a claim holds its run's row until it commits, so
        # that the run is not taken for dead meanwhile.
        self.run_state = r(
            "SELECT state FROM runs WHERE run_id = :run_id" + (" FOR SHARE" if d.concurrent else "")
        )

        # --- claims ----------------------------------------------------------------
        release_all = "UPDATE events SET claimed_by = NULL, claimed_until = NULL"
        self.release_claims = r(release_all)
        self.release_held = r(f"{release_all} WHERE external_id IN ({held})")
        self.renew_held = r(
            f"UPDATE events SET claimed_until = {clock} + :claim_s WHERE external_id IN ({held})"
        )
        # Where runs share the ledger, a row is taken only from no live run: a run that
        # visibly ended holds nothing. (Not "no running run is seen": the subquery reads
        # the statement's snapshot, which may predate a run that started since.)
        guard = (
            f" WHERE e.status {d.any_of('claimable')} AND (e.claimed_by IS NULL"
            f" OR e.claimed_by = :run_id OR e.claimed_until < {clock}"
            " OR EXISTS (SELECT 1 FROM runs r WHERE r.run_id = e.claimed_by"
            " AND r.state <> 'running'))"
            if d.concurrent
            else ""
        )
        # Where one process holds the ledger, it takes every row: no need to say which.
        returning = " RETURNING external_id" if d.concurrent else ""
        # A batch is claimed at once: new rows are inserted, known ones taken.
        claimed = (
            "{0}, 'in_flight', {1}, {2}, {3}, {4}, {5}, :mapping_hash, :run_id, :run_id,"
            f" {clock} + :claim_s, :now, :now, :now"
        )
        self.claim = r(
            "INSERT INTO events AS e (external_id, status, kind, source, position,"
            " event_timestamp, payload_hash, mapping_hash, run_id, claimed_by, claimed_until,"
            " created_at, updated_at, sent_at)"
            f" {d.batch('rows', ('text',) * 6, claimed)}"
            " ON CONFLICT (external_id) DO UPDATE SET status = 'in_flight',"
            " source = excluded.source, position = excluded.position,"
            " event_timestamp = excluded.event_timestamp,"
            " payload_hash = excluded.payload_hash, mapping_hash = excluded.mapping_hash,"
            " run_id = excluded.run_id, claimed_by = excluded.claimed_by,"
            " claimed_until = excluded.claimed_until, updated_at = excluded.updated_at,"
            f" sent_at = excluded.sent_at{guard}{returning}"
        )
        # A claim another run took since (this one's had lapsed) stays its own.
        release = (
            "claimed_until = CASE WHEN claimed_by = :run_id THEN NULL ELSE claimed_until END,"
            " claimed_by = CASE WHEN claimed_by = :run_id THEN NULL ELSE claimed_by END"
            if d.concurrent
            else "claimed_by = NULL, claimed_until = NULL"
        )

        # --- answers ---------------------------------------------------------------
        self.add_attempt = r(
            "INSERT INTO attempts (run_id, external_id, attempt, outcome, http_status, code,"
            " message, sent_at, answered_at, latency_ms) VALUES (:run_id, :external_id,"
            " :attempt, :outcome, :http_status, :code, :message, :sent_at, :answered_at,"
            " :latency_ms)"
        )
        self.settle = r(
            "UPDATE events SET status = :status,"
            " plain_event_id = COALESCE(:plain_event_id, plain_event_id),"
            " plain_customer_id = COALESCE(:plain_customer_id, plain_customer_id),"
            " attempts = attempts + :attempts, code = :code, message = :message,"
            " delivered_by = CASE WHEN :delivered THEN :run_id ELSE delivered_by END,"
            f" {release}, updated_at = :now, sent_at = :sent_at,"
            " answered_at = :answered_at, latency_ms = :latency_ms"
            " WHERE external_id = :external_id"
        )
        self.add_issue = r(
            "INSERT INTO row_issues (run_id, source, position, status, external_id,"
            " column_name, code, message, created_at) VALUES (:run_id, :source, :position,"
            " :status, :external_id, :column_name, :code, :message, :now)"
            " ON CONFLICT (run_id, source, position) DO UPDATE SET status = excluded.status,"
            " external_id = excluded.external_id, column_name = excluded.column_name,"
            " code = excluded.code, message = excluded.message, created_at = excluded.created_at"
        )
        self.add_customer = r(
            "INSERT INTO customers (identifier, status, plain_customer_id, result, code,"
            " message, run_id, updated_at) VALUES (:identifier, :status, :plain_customer_id,"
            " :result, :code, :message, :run_id, :now)"
            " ON CONFLICT (identifier) DO UPDATE SET status = excluded.status,"
            " plain_customer_id = excluded.plain_customer_id, result = excluded.result,"
            " code = excluded.code, message = excluded.message, run_id = excluded.run_id,"
            " updated_at = excluded.updated_at"
        )

        # --- planning ----------------------------------------------------------------
        self.lookup = r(
            f"SELECT {d.packed(_ENTRY)} FROM events WHERE external_id {d.any_of('ids')}"
        )
        self.customers = r(
            f"SELECT {d.packed(_CUSTOMER)} FROM customers WHERE identifier {d.any_of('ids')}"
        )
        # `WHERE true`: SQLite's parser wants a WHERE between a SELECT and ON CONFLICT.
        self.see = r(
            "INSERT INTO seen (h, crc, source, position) SELECT c0, c1, c2, c3"
            f" FROM {d.rows('rows', 'bigint', 'bigint', 'int', 'text')} WHERE true"
            " ON CONFLICT DO NOTHING"
        )
        self.seen_before = r(
            f"SELECT {d.packed('h, crc, source, position')} FROM seen WHERE h {d.any_of('ids')}"
        )
        self.see_customer = r(
            "INSERT INTO seen_customers VALUES (:identifier) ON CONFLICT DO NOTHING"
        )

        # --- reading -----------------------------------------------------------------
        self.status_counts = r("SELECT status, COUNT(*) FROM events GROUP BY status")
        self.event = r("SELECT * FROM events WHERE external_id = :external_id")
