"""`--source-sql` on a big PostgreSQL table, and ledger throughput: time and peak RSS.

Starts its own throwaway PostgreSQL on 127.0.0.1 (`bash scripts/pg.sh start`, stopped at
the end with `bash scripts/pg.sh stop DIR`), or uses the server BACKFILL_TEST_PG_URL names
when it is set (the benchmark then needs the right to create a database). Everything goes
into a fresh database `backfill_bench` on that server, dropped at the end.

The table `activity` holds N rows (default 1,000,000) shaped like data/sample_activity.csv:
the rows benchmarks/sources.py generates (its 11 columns, quoted commas and double quotes,
non-ASCII text, about 5% multi-line descriptions, unique `event_id` values), typed as a
warehouse would type them: `id bigint` (the row number, the primary key), `occurred_at
timestamptz`, `amount numeric(12, 2)`, the rest `text` (empty values null where the
Parquet set has nulls). It is loaded with psycopg's COPY, a chunk of 100,000 rows at a
time; `activity_small` is its first N/5 rows. Every step reads the same SELECT of the 11
columns of data/sample_activity.csv (`id` is not read), and measures, each a fresh process
started here (wall seconds include interpreter start-up and imports; the peak RSS is the
child's own, from `os.wait4`; MB are MiB):

1. Reading every row of the table, three ways:
   a. the floor: a bare psycopg server-side cursor (`conn.cursor(name=...)`, `itersize`
      1000) iterated to the end;
   b. the SQL reader alone: `backfill.readers.sql.read_chunks` (chunks of 1000 rows, the
      mapping's key column as position, every value made text), counting rows;
   c. `backfill validate --source-sql QUERY --source-url URL --mapping data/mapping.toml`
      (the CLI): reads and maps every row offline; every row must be valid. It also runs
      on `activity_small`, to show its peak RSS does not grow with the rows.
   rows/s are over the read itself, timed inside the child (connect to last row; for
   validate the CLI process's wall time, start-up included).
2. Ledger throughput, on SQLite and on PostgreSQL (one process each, one after the
   other): `SqliteLedger.open(path)` / `PostgresLedger.open(url)`, `start_run`, then
   100,000 events in batches of 25 (the size of a run's send batches), each batch
   `mark_in_flight` then `record_outcomes` with a DELIVERED outcome and one attempt per
   event, as a run records them. events/s are over the batches, timed inside the child.

Goals: validate's peak RSS under 300 MB and flat (at N at most 10% over its peak at N/5),
and the SQL reader at least half as fast as the bare cursor. The server runs with
`fsync=off` (scripts/pg.sh), which flatters the PostgreSQL ledger. No network but
127.0.0.1.

Run it from the repository root:

    .venv/bin/python benchmarks/sql.py            # 1,000,000 rows, about a minute
    .venv/bin/python benchmarks/sql.py --quick    # 200,000 rows
    .venv/bin/python benchmarks/sql.py --rows 50000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sources import (  # noqa: E402  (the sibling benchmark's generator and child runner)
    CHUNK_ROWS,
    COLUMNS,
    NULLABLE,
    Child,
    checked,
    chunks,
    own_mb,
    run_child,
    short,
)

ROOT = Path(__file__).resolve().parent.parent
MAPPING = "data/mapping.toml"  # relative to ROOT, every child's working directory
ROWS = 1_000_000
QUICK_ROWS = 200_000
SMALL_SHARE = 5  # the small table holds N / 5 rows
DATABASE = "backfill_bench"
TABLE, SMALL_TABLE = "activity", "activity_small"
ITERSIZE = 1000  # rows per round trip of the bare cursor, as the reader's chunks
LEDGER_EVENTS = 100_000
LEDGER_BATCH = 25
GOAL_MB = 300.0
FLAT_SHARE = 0.10  # "flat": the peak at N at most 10% over the peak at N / 5
GOAL_SPEED_SHARE = 0.5  # the SQL reader at least half as fast as the bare cursor

CREATE = """
CREATE TABLE {table} (
    id bigint PRIMARY KEY,
    event_id text NOT NULL,
    occurred_at timestamptz NOT NULL,
    customer_email text NOT NULL,
    customer_name text NOT NULL,
    event_type text NOT NULL,
    plan text,
    amount numeric(12, 2),
    currency text,
    url text,
    description text,
    actor text
)
"""


def query(table: str) -> str:
    return f"SELECT {', '.join(COLUMNS)} FROM {table}"


def libpq(url: str) -> str:
    """libpq's form of a SQLAlchemy URL (as `ledger.postgres.conninfo`, without importing it)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


# --- child roles -------------------------------------------------------------------------


def role_load(server_url: str, url: str, rows: str) -> None:
    """Role `_load`: a fresh database, the two tables, loaded with COPY; print figures."""
    import psycopg

    total = int(rows)
    small = max(1, total // SMALL_SHARE)
    with psycopg.connect(libpq(server_url), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    started = time.perf_counter()
    with psycopg.connect(libpq(url)) as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # the sample's naive timestamps are UTC
        conn.execute(CREATE.format(table=TABLE))
        names = ", ".join(("id", *COLUMNS))
        first = 0
        with conn.cursor() as cur, cur.copy(f"COPY {TABLE} ({names}) FROM STDIN") as copy:
            for cols, _ in chunks(total):
                columns = [
                    [v or None for v in cols[name]]
                    if name in NULLABLE or name == "amount"
                    else cols[name]
                    for name in COLUMNS
                ]
                for n, row in enumerate(zip(*columns, strict=True)):
                    copy.write_row((first + n, *row))
                first += len(columns[0])
        conn.execute(f"CREATE TABLE {SMALL_TABLE} AS SELECT * FROM {TABLE} WHERE id < {small}")
        conn.commit()
    loaded = time.perf_counter() - started
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {TABLE}")
        conn.execute(f"VACUUM ANALYZE {SMALL_TABLE}")
        figures = {}
        for table in (TABLE, SMALL_TABLE):
            count, size = conn.execute(
                f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}"
            ).fetchone() or (0, 0)
            figures[table] = {"rows": count, "mb": size / 2**20}
        version = conn.execute("SHOW server_version").fetchone()
    print(json.dumps({"seconds": loaded, "tables": figures, "server": version and version[0]}))


def role_bare(url: str, table: str) -> None:
    """Role `_bare`: a psycopg server-side cursor over the query, every row fetched."""
    import psycopg

    started = time.perf_counter()
    rows = 0
    with psycopg.connect(libpq(url)) as conn, conn.cursor(name="bench") as cur:
        cur.itersize = ITERSIZE
        cur.execute(query(table))
        for _ in cur:
            rows += 1
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}))


def role_reader(url: str, table: str) -> None:
    """Role `_reader`: `backfill.readers.sql.read_chunks` over the query, rows counted."""
    # Imported before the clock starts, as the bare cursor's psycopg is: start-up, not reading.
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

    from backfill.config import sql_source
    from backfill.mapping import load_mapping
    from backfill.readers.sql import read_chunks

    keys = [key.column for key in load_mapping(MAPPING).keys]
    source = sql_source(query(table), url)
    assert source is not None
    started = time.perf_counter()
    rows = 0
    for chunk in read_chunks(source, key_columns=keys):
        rows += len(chunk)
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}))


def role_ledger(kind: str, target: str) -> None:
    """Role `_ledger`: LEDGER_EVENTS events claimed then delivered, LEDGER_BATCH at a time."""
    from backfill.ledger import SqliteLedger
    from backfill.ledger.postgres import PostgresLedger
    from backfill.models import Attempt, Event, EventKind, Outcome, Status

    ledger: SqliteLedger | PostgresLedger = (
        SqliteLedger.open(target) if kind == "sqlite" else PostgresLedger.open(target)
    )
    run_id = f"bench-{kind}-{os.getpid()}"
    with ledger:
        ledger.start_run(
            run_id,
            options={"note": "benchmarks/sql.py: ledger throughput, nothing sent"},
            mapping_hash="bench-mapping",
            id_rule="event_id",
            id_format_version=1,
        )
        started = time.perf_counter()
        for first in range(0, LEDGER_EVENTS, LEDGER_BATCH):
            events = [
                Event(
                    f"acme-activity-{n:012d}",
                    EventKind.CUSTOMER,
                    {"title": "Invoice paid"},
                    f"{n:064x}",
                    "postgresql://bench@127.0.0.1/backfill_bench",
                    f"event_id=evt_{n:08d}",
                    "2024-01-01T00:00:00.000Z",
                )
                for n in range(first, min(LEDGER_EVENTS, first + LEDGER_BATCH))
            ]
            ledger.mark_in_flight(run_id, events, mapping_hash="bench-mapping", claim_s=120.0)
            sent = time.time()
            answered = sent + 0.05
            ledger.record_outcomes(
                run_id,
                [
                    (
                        e,
                        Outcome(
                            Status.DELIVERED,
                            attempts=1,
                            plain_event_id=f"ev_{e.external_id}",
                            sent_at=sent,
                            answered_at=answered,
                            latency_ms=50.0,
                        ),
                    )
                    for e in events
                ],
                [Attempt(e.external_id, 1, "delivered", sent, answered, 200) for e in events],
            )
        seconds = time.perf_counter() - started
        ledger.end_run(
            run_id,
            state="finished",
            exit_code=0,
            counts={"delivered": LEDGER_EVENTS},
            workspace_id="",
        )
        counts = ledger.status_counts()
    print(json.dumps({"events": LEDGER_EVENTS, "seconds": seconds, "counts": counts}))


def role_drop(server_url: str) -> None:
    """Role `_drop`: drop the benchmark's database."""
    import psycopg

    with psycopg.connect(libpq(server_url), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


ROLES: dict[str, Callable[..., None]] = {
    "_load": role_load,
    "_bare": role_bare,
    "_reader": role_reader,
    "_ledger": role_ledger,
    "_drop": role_drop,
}


def role(name: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), name, *args]


# --- the server --------------------------------------------------------------------------


@contextmanager
def postgres() -> Iterator[str]:
    """The server's URL: BACKFILL_TEST_PG_URL, or a throwaway one from scripts/pg.sh."""
    given = os.environ.get("BACKFILL_TEST_PG_URL")
    if given:
        print(f"PostgreSQL: BACKFILL_TEST_PG_URL ({urlsplit(given).hostname})")
        yield given
        return
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", "scripts/pg.sh", "start"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    found = dict(re.findall(r"^export (BACKFILL_TEST_PG_\w+)=(.*)$", done.stdout, re.M))
    folder = found.get("BACKFILL_TEST_PG_DIR")
    try:
        if done.returncode != 0 or "BACKFILL_TEST_PG_URL" not in found:
            raise SystemExit(
                f"FAIL: scripts/pg.sh start exited {done.returncode}\n{done.stderr[-3000:]}"
            )
        took = time.perf_counter() - started
        print(f"PostgreSQL: a throwaway server (scripts/pg.sh), started in {took:.1f} s")
        yield found["BACKFILL_TEST_PG_URL"]
    finally:
        if folder:
            subprocess.run(
                ["bash", "scripts/pg.sh", "stop", folder],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
            )


# --- steps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    table: str
    rows: int
    wall_s: float
    read_s: float
    peak_mb: float

    @property
    def rate(self) -> float:
        return self.rows / self.read_s if self.read_s else 0.0

    def line(self) -> str:
        return (
            f"{self.name:<36} {self.table:<15} {self.rows:>10,} {self.wall_s:>7.2f} "
            f"{self.read_s:>7.2f} {self.rate:>10,.0f} {self.peak_mb:>8.1f}"
        )


HEADER = (
    f"{'step':<36} {'table':<15} {'rows':>10} {'wall s':>7} {'read s':>7} {'rows/s':>10} "
    f"{'peak MB':>8}"
)


def read_step(name: str, label: str, url: str, table: str, rows: int) -> Step:
    child = checked(label, run_child(role(name, url, table)))
    figures = child.last_json()
    if figures["rows"] != rows:
        raise SystemExit(f"FAIL: {label} read {figures['rows']:,} rows of {table}, not {rows:,}")
    return Step(label, table, rows, child.seconds, float(figures["seconds"]), child.peak_mb)


def validate_step(url: str, table: str, rows: int, results: Path) -> Step:
    """`backfill validate --source-sql` as a CLI subprocess; every row must be valid."""
    args = [
        sys.executable, "-m", "backfill", "validate", "--source-sql", query(table),
        "--source-url", url, "--mapping", MAPPING, "--results-dir", str(results),
    ]  # fmt: skip
    child = checked(f"backfill validate --source-sql ({table})", run_child(args))
    counts = {
        key: int(value)
        for key, value in re.findall(r"^(rows read|valid|invalid)\s+(\d+)", child.stdout, re.M)
    }
    if counts.get("rows read") != rows or counts.get("valid") != rows:
        raise SystemExit(
            f"FAIL: validate of {table} did not find {rows:,} valid rows:\n{child.stdout}"
        )
    name = "backfill validate --source-sql"
    return Step(name, table, rows, child.seconds, child.seconds, child.peak_mb)


def ratio_line(name: str, ours: Step, floor: Step) -> str:
    return (
        f"  ratio {name} / bare cursor: time {ours.read_s / floor.read_s:.2f}x, "
        f"peak RSS {ours.peak_mb / floor.peak_mb:.2f}x"
    )


@dataclass(frozen=True)
class LedgerStep:
    backend: str
    events: int
    wall_s: float
    loop_s: float
    peak_mb: float

    def line(self) -> str:
        return (
            f"{self.backend:<10} {self.events:>8,} {LEDGER_BATCH:>6} {self.wall_s:>7.2f} "
            f"{self.loop_s:>7.2f} {self.events / self.loop_s:>9,.0f} {self.peak_mb:>8.1f}"
        )


def ledger_step(backend: str, kind: str, target: str) -> LedgerStep:
    child: Child = checked(f"the {backend} ledger", run_child(role("_ledger", kind, target)))
    figures = child.last_json()
    if figures["counts"] != {"delivered": LEDGER_EVENTS}:
        raise SystemExit(f"FAIL: the {backend} ledger holds {figures['counts']}")
    return LedgerStep(
        backend, LEDGER_EVENTS, child.seconds, float(figures["seconds"]), child.peak_mb
    )


# --- main --------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, default=ROWS, help=f"rows (default {ROWS:,})")
    size.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows")
    args = parser.parse_args()
    rows = QUICK_ROWS if args.quick else args.rows
    if rows < SMALL_SHARE:
        parser.error(f"--rows must be at least {SMALL_SHARE}")
    small = rows // SMALL_SHARE
    started = time.perf_counter()
    print(
        f"cpus {os.cpu_count()}, Python {platform.python_version()}, {platform.platform()}; "
        f"mapping {MAPPING}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-sql-") as name, postgres() as server:
        tmp = Path(name)
        url = with_database(server, DATABASE)
        try:
            made = checked("loading", run_child(role("_load", server, url, str(rows))))
            loaded = made.last_json()
            tables = loaded["tables"]
            print(
                f"PostgreSQL {loaded['server']}: loaded with COPY in {loaded['seconds']:.1f} s, "
                f"{CHUNK_ROWS:,} rows generated at a time (loader peak RSS {made.peak_mb:.1f} "
                f"MB): {TABLE} {tables[TABLE]['rows']:,} rows ({tables[TABLE]['mb']:.0f} MB), "
                f"{SMALL_TABLE} {tables[SMALL_TABLE]['rows']:,} rows "
                f"({tables[SMALL_TABLE]['mb']:.0f} MB)"
            )
            bare_python = run_child([sys.executable, "-c", "pass"])
            print(
                f"`python -c pass` peaks at {bare_python.peak_mb:.1f} MB "
                f"(this process: {own_mb():.1f} MB)"
            )
            print(f"query: {query(TABLE)}")

            print(
                "\n1. reading every row, each its own process (wall s: start-up and imports "
                "included; read s: connect to last row, inside the child; rows/s over read s)"
            )
            print(HEADER)
            label = f"psycopg named cursor, itersize {ITERSIZE}"
            bare = read_step("_bare", label, url, TABLE, rows)
            reader = read_step("_reader", "backfill.readers.sql.read_chunks", url, TABLE, rows)
            big = validate_step(url, TABLE, rows, tmp / "results")
            low = validate_step(url, SMALL_TABLE, small, tmp / "results")
            for step in (bare, reader, big, low):
                print(step.line())
            print(ratio_line("SQL reader", reader, bare))
            print(ratio_line("validate", big, bare))
            print(
                "  (validate's seconds are its whole process: start-up, the header query, "
                "mapping every row and the duplicate check included)"
            )

            print(
                f"\n2. ledger throughput: {LEDGER_EVENTS:,} events, batches of {LEDGER_BATCH}, "
                "mark_in_flight then record_outcomes (DELIVERED, one attempt each); loop s "
                "inside the child"
            )
            print(
                f"{'ledger':<10} {'events':>8} {'batch':>6} {'wall s':>7} {'loop s':>7} "
                f"{'events/s':>9} {'peak MB':>8}"
            )
            ledgers = [
                ledger_step("SQLite", "sqlite", str(tmp / "ledger.sqlite")),
                ledger_step("PostgreSQL", "postgres", url),
            ]
            for ledger in ledgers:
                print(ledger.line())
        finally:
            run_child(role("_drop", server))

        print("\ngoals")
        under = max(big.peak_mb, low.peak_mb) < GOAL_MB
        flat = big.peak_mb <= low.peak_mb * (1 + FLAT_SHARE)
        print(
            f"validate --source-sql: peak RSS under {GOAL_MB:g} MB and flat from "
            f"{short(small)} to {short(rows)} rows: {'met' if under and flat else 'NOT met'} "
            f"({low.peak_mb:.1f} MB at {small:,} rows, {big.peak_mb:.1f} MB at {rows:,}: "
            f"{100 * (big.peak_mb / low.peak_mb - 1):+.1f}%, flat = at most "
            f"+{100 * FLAT_SHARE:g}%)"
        )
        share = reader.rate / bare.rate
        print(
            f"SQL reader at least {GOAL_SPEED_SHARE:g}x the bare cursor's speed: "
            f"{'met' if share >= GOAL_SPEED_SHARE else 'NOT met'} "
            f"({reader.rate:,.0f} rows/s against {bare.rate:,.0f}: {share:.2f}x)"
        )
        print(
            "ledgers: no goal set; "
            + ", ".join(f"{x.backend} {x.events / x.loop_s:,.0f} events/s" for x in ledgers)
        )
    print(f"benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
