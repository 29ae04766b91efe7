"""`backfill export` and `backfill status` on a big SQLite ledger, and the ledger's write cost.

Builds a SQLite ledger for a job of N source rows (default 1,000,000) through the ledger's
own API, as a run records it (`SqliteLedger.open(path)`, `start_run`, then per chunk of
1,000 source rows `record_issues` for the invalid ones, `mark_in_flight` then
`record_outcomes` for the rest, and `end_run`). The rows are those of one source
(`data/activity.csv`, position its line number), externalIds as `backfill.ids` writes
them (`acme-activity_` and 32 hex digits of a hash: random order in the primary key),
with this mix, every 200 rows:

* 194 (97%) delivered: one attempt, a Plain event id;
* 4 (2%) rejected: one attempt, a code (`not_found` or `input_validation`) and a message
  with commas and double quotes;
* 1 (0.5%) retryable: four attempts, each a 503 (`HTTP_503`);
* 1 (0.5%) invalid: never an event, a row issue (`record_issues`, `invalid_timestamp`).

A second ledger of N / 5 rows is built the same way. Then, each step a fresh process
started here (wall seconds include interpreter start-up and imports; the peak RSS is the
child's own, from `os.wait4`; MB are MiB; this process stays small, as a child's peak
RSS starts at its parent's size at fork):

1. the floor: a bare `sqlite3` connection, `SELECT * FROM events` streamed into
   `csv.writer(...).writerows(cursor)`: dumping the events table in its own order;
2. `backfill.job_export.export_results(ledger, folder)` (what `backfill export` runs):
   results.csv and failed.csv, in externalId order, invalid rows included; rows/s over
   its rows, and its time against the floor's;
3. `backfill.job_status.job_status(ledger)` (what `backfill status` runs): counts, top
   error codes, runs and the ETA, from the ledger alone;
4. export and status again on the N / 5 ledger: export's peak RSS must not grow with N
   (at N at most 10% over its peak at N / 5);
5. the cost of ledger writes: 100,000 events recorded in batches of 25 (the size of a
   run's send batches: `mark_in_flight` then `record_outcomes`, DELIVERED with one
   attempt each, as benchmarks/sql.py's ledger step; the events shaped as above) on a
   fresh ledger as it is, and on a fresh ledger whose two indexes of schema version 4
   (`events_place`, `row_issues_place`: `status` and `export` find a row's issue and
   event by source and position) are dropped right after opening it. Each is run
   WRITE_ROUNDS (3) times, alternating (`--write-rounds`), and the fastest of each is
   compared: on a shared machine one round may take twice as long as the next. The
   loop's CPU time (the child's user + system time, `time.process_time`) is printed
   beside its wall time: it is what other processes on the machine disturb least.

Seconds of a step are timed inside its child (imports excluded), the call itself. The
machine may be shared: the figures are noisy, a few % to tens of % from one run to
the next. No network.

Run it from the repository root:

    .venv/bin/python benchmarks/export.py                 # 1,000,000 rows, about 5 minutes
    .venv/bin/python benchmarks/export.py --rows 200000
    .venv/bin/python benchmarks/export.py --keep DIR      # keep the ledgers
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sources import checked, own_mb, run_child, short  # noqa: E402  (the sibling's runner)

ROWS = 1_000_000
SMALL_SHARE = 5  # the small ledger holds N / 5 rows
CHUNK = 1_000  # source rows per build chunk (issues, then one batch of events)
CYCLE = 200  # the mix repeats every 200 rows:
INVALID, RETRYABLE, REJECTED = (0,), (1,), (2, 3, 4, 5)  # the rest delivered
RETRIES = 4  # attempts of a retryable row, each a 503
SOURCE = "data/activity.csv"
NAMESPACE = "acme-activity"
MAPPING_HASH = "bench-mapping"
WRITE_EVENTS = 100_000
WRITE_BATCH = 25
WRITE_ROUNDS = 3
PLACE_INDEXES = ("events_place", "row_issues_place")  # schema version 4
FLAT_SHARE = 0.10  # "flat": the peak at N at most 10% over the peak at N / 5
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


# --- the ledger's rows ---------------------------------------------------------------------


def external_id(n: int) -> str:
    """Row n's externalId, shaped as `backfill.ids` makes them (a hash: random order)."""
    return f"{NAMESPACE}_{hashlib.sha256(f'evt_{n:08d}'.encode()).hexdigest()[:32]}"


def kind_of(n: int) -> str:
    k = n % CYCLE
    if k in INVALID:
        return "invalid"
    if k in RETRYABLE:
        return "retryable"
    if k in REJECTED:
        return "rejected"
    return "delivered"


def expected(rows: int) -> dict[str, int]:
    """Rows per status for a ledger of `rows` source rows."""
    counts: Counter[str] = Counter()
    for k in range(CYCLE):
        counts[kind_of(k)] += rows // CYCLE + (k < rows % CYCLE)
    return dict(counts)


def record(ledger: Any, run_id: str, first: int, last: int) -> None:
    """Record source rows first..last-1 as a run does: issues, then events and answers."""
    from backfill.models import Attempt, Event, EventKind, Invalid, Outcome, RowProblem, Status

    issues: list[tuple[Invalid, Status]] = []
    events: list[Event] = []
    outcomes: list[tuple[Event, Outcome]] = []
    attempts: list[Attempt] = []
    sent = time.time()
    for n in range(first, last):
        kind, ext_id, position = kind_of(n), external_id(n), str(n + 2)
        if kind == "invalid":
            problem = RowProblem(
                "invalid_timestamp", "occurred_at: 'yesterday' is not a timestamp", "occurred_at"
            )
            issues.append((Invalid(SOURCE, position, problem, ext_id), Status.INVALID))
            continue
        stamp = (EPOCH + timedelta(seconds=17 * n)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        event = Event(
            ext_id, EventKind.CUSTOMER, {}, hashlib.md5(ext_id.encode()).hexdigest(), SOURCE,
            position, stamp,
        )  # fmt: skip
        events.append(event)
        answered = sent + 0.05
        if kind == "delivered":
            eid = f"ev_01{hashlib.sha1(ext_id.encode()).hexdigest()[:24].upper()}"
            outcome = Outcome(Status.DELIVERED, 1, eid, "", "", "", sent, answered, 50.0)
            attempts.append(Attempt(ext_id, 1, "delivered", sent, answered, 200))
        elif kind == "rejected":
            if n % 2:
                code, message = "not_found", f'customer "user{n}@example.com" not found, skipped'
            else:
                code, message = "input_validation", 'title: "Invoice paid, again" is too long'
            outcome = Outcome(Status.REJECTED, 1, "", "", code, message, sent, answered, 50.0)
            attempts.append(Attempt(ext_id, 1, "rejected", sent, answered, 200, code, message))
        else:
            code, message = "HTTP_503", "Plain answered 503 Service Unavailable"
            outcome = Outcome(Status.RETRYABLE, RETRIES, "", "", code, message, sent, answered)
            attempts += [
                Attempt(ext_id, k, "transient", sent, answered, 503, code, message)
                for k in range(1, RETRIES + 1)
            ]
        outcomes.append((event, outcome))
    ledger.record_issues(run_id, issues)
    ledger.mark_in_flight(run_id, events, mapping_hash=MAPPING_HASH, claim_s=120.0)
    ledger.record_outcomes(run_id, outcomes, attempts)


def start(ledger: Any, run_id: str, note: str) -> None:
    ledger.start_run(
        run_id,
        options={"rate": "450/min", "note": note},
        mapping_hash=MAPPING_HASH,
        id_rule="acme-activity:event_id:string",
        id_format_version=1,
    )


# --- child roles -------------------------------------------------------------------------


def role_build(path: str, rows: str) -> None:
    """Role `_build`: a ledger of `rows` source rows; print figures as JSON."""
    from backfill.ledger import SqliteLedger

    total = int(rows)
    run_id = f"bench-build-{os.getpid()}"
    started = time.perf_counter()
    with SqliteLedger.open(path) as ledger:
        start(ledger, run_id, "benchmarks/export.py: a ledger built, nothing sent")
        for first in range(0, total, CHUNK):
            record(ledger, run_id, first, min(total, first + CHUNK))
        counts = ledger.status_counts()
        ledger.end_run(run_id, state="finished", exit_code=1, counts=counts, workspace_id="")
        (issues,) = ledger.query("SELECT COUNT(*) FROM row_issues")[0]
        (attempts,) = ledger.query("SELECT COUNT(*) FROM attempts")[0]
    seconds = time.perf_counter() - started
    conn = sqlite3.connect(path)  # fold the -wal file in, so every step reads one file
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    mb = Path(path).stat().st_size / 2**20
    out = {"seconds": seconds, "counts": counts, "issues": issues, "attempts": attempts}
    print(json.dumps(out | {"mb": mb}))


def role_bare(path: str, out: str) -> None:
    """Role `_bare`: the floor, `SELECT * FROM events` streamed into csv.writer."""
    started = time.perf_counter()
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    cur = conn.execute("SELECT * FROM events")
    with open(out, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([d[0] for d in cur.description])
        writer.writerows(cur)
    seconds = time.perf_counter() - started
    (rows,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
    conn.close()
    print(json.dumps({"rows": rows, "seconds": seconds, "mb": Path(out).stat().st_size / 2**20}))


def role_export(path: str, out: str) -> None:
    """Role `_export`: `backfill.job_export.export_results(ledger, folder)`."""
    from backfill.job_export import export_results

    started = time.perf_counter()
    summary = export_results(path, out)
    seconds = time.perf_counter() - started
    mb = sum(Path(f).stat().st_size for f in summary.files) / 2**20
    figures = {"rows": summary.rows, "failed": summary.failed, "by_status": summary.by_status}
    print(json.dumps(figures | {"seconds": seconds, "mb": mb}))


def role_status(path: str) -> None:
    """Role `_status`: `backfill.job_status.job_status(ledger)`."""
    from backfill.job_status import job_status

    started = time.perf_counter()
    status = job_status(path)
    seconds = time.perf_counter() - started
    codes = [f"{c.code} ({c.status}) {c.rows}" for c in status.codes]
    rows = sum(status.counts.values())
    figures = {"rows": rows, "counts": status.counts, "codes": codes, "unsettled": status.unsettled}
    print(json.dumps(figures | {"seconds": seconds, "runs": len(status.runs)}))


def role_writes(path: str, drop: str) -> None:
    """Role `_writes`: WRITE_EVENTS events claimed then delivered, WRITE_BATCH at a time."""
    from backfill.ledger import SqliteLedger
    from backfill.models import Attempt, Event, EventKind, Outcome, Status

    if drop == "drop":
        # Opened (so created at schema version 4), the indexes dropped, opened again: the
        # ledger stays at version 4, so nothing recreates them.
        SqliteLedger.open(path).close()
        conn = sqlite3.connect(path)
        for index in PLACE_INDEXES:
            conn.execute(f"DROP INDEX {index}")
        conn.close()
    run_id = f"bench-writes-{os.getpid()}"
    with SqliteLedger.open(path) as ledger:
        indexes = sorted(
            name for (name,) in ledger.query("SELECT name FROM sqlite_master WHERE type='index'")
        )
        start(ledger, run_id, "benchmarks/export.py: ledger writes, nothing sent")
        events = []
        for n in range(WRITE_EVENTS):
            ext_id = external_id(n)
            stamp = (EPOCH + timedelta(seconds=17 * n)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            digest = hashlib.md5(ext_id.encode()).hexdigest()
            events.append(Event(ext_id, EventKind.CUSTOMER, {}, digest, SOURCE, str(n + 2), stamp))
        started, cpu = time.perf_counter(), time.process_time()
        for first in range(0, WRITE_EVENTS, WRITE_BATCH):
            batch = events[first : first + WRITE_BATCH]
            ledger.mark_in_flight(run_id, batch, mapping_hash=MAPPING_HASH, claim_s=120.0)
            sent = time.time()
            answered = sent + 0.05
            ledger.record_outcomes(
                run_id,
                [
                    (e, Outcome(Status.DELIVERED, 1, f"ev_{n}", "", "", "", sent, answered, 50.0))
                    for n, e in enumerate(batch, first)
                ],
                [Attempt(e.external_id, 1, "delivered", sent, answered, 200) for e in batch],
            )
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        counts = ledger.status_counts()
    print(json.dumps({"seconds": seconds, "cpu": cpu, "counts": counts, "indexes": indexes}))


ROLES: dict[str, Callable[..., None]] = {
    "_build": role_build,
    "_bare": role_bare,
    "_export": role_export,
    "_status": role_status,
    "_writes": role_writes,
}


def role(name: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), name, *args]


# --- steps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    rows: int
    wall_s: float
    seconds: float
    peak_mb: float
    figures: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.name:<34} {self.rows:>10,} {self.wall_s:>7.2f} {self.seconds:>7.2f} "
            f"{self.rate:>10,.0f} {self.peak_mb:>8.1f}"
        )


HEADER = f"{'step':<34} {'rows':>10} {'wall s':>7} {'s':>7} {'rows/s':>10} {'peak MB':>8}"


def step(name: str, args: list[str]) -> Step:
    child = checked(name, run_child(args))
    figures = child.last_json()
    rows = int(figures["rows"])
    return Step(name, rows, child.seconds, float(figures["seconds"]), child.peak_mb, figures)


def fresh(folder: Path) -> Path:
    """An empty folder (the previous step's output removed: 1M-row CSVs are big)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def check_export(export: Step, rows: int) -> None:
    want = expected(rows)
    if export.rows != rows or export.figures["by_status"] != want:
        raise SystemExit(
            f"FAIL: export wrote {export.rows:,} rows {export.figures['by_status']}, "
            f"not {rows:,} {want}"
        )


def check_status(status: Step, rows: int) -> None:
    if status.figures["counts"] != expected(rows):
        raise SystemExit(f"FAIL: status counted {status.figures['counts']}, not {expected(rows)}")


def build(path: Path, rows: int) -> dict[str, Any]:
    child = checked(
        f"building the ledger of {rows:,} rows", run_child(role("_build", str(path), str(rows)))
    )
    built = child.last_json()
    counts = dict(built["counts"]) | {"invalid": built["issues"]}
    if counts != expected(rows):
        raise SystemExit(f"FAIL: the ledger holds {counts}, not {expected(rows)}")
    print(
        f"ledger of {rows:,} rows built in {built['seconds']:.1f} s (peak RSS "
        f"{child.peak_mb:.1f} MB): {built['mb']:.0f} MB, "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        + f"; {built['attempts']:,} attempts"
    )
    return built


@dataclass(frozen=True)
class Writes:
    indexes: str
    rounds: list[float]
    cpu: list[float]
    peak_mb: float

    @property
    def best(self) -> float:
        return min(self.rounds)

    @property
    def best_cpu(self) -> float:
        return min(self.cpu)

    @property
    def rate(self) -> float:
        return WRITE_EVENTS / self.best


def writes(folder: Path, rounds: int) -> tuple[Writes, Writes]:
    """Both ledgers, `rounds` rounds each, alternating; the fastest of each counts."""
    found: dict[str, tuple[list[float], list[float], list[float]]] = {
        mode: ([], [], []) for mode in ("keep", "drop")
    }
    for n in range(rounds):
        for mode in ("keep", "drop"):
            path = fresh(folder / f"writes-{mode}-{n}") / "ledger.sqlite"
            child = checked(f"ledger writes ({mode})", run_child(role("_writes", str(path), mode)))
            figures = child.last_json()
            if figures["counts"] != {"delivered": WRITE_EVENTS}:
                raise SystemExit(f"FAIL: the ledger ({mode}) holds {figures['counts']}")
            dropped = set(PLACE_INDEXES) - set(figures["indexes"])
            if dropped != (set(PLACE_INDEXES) if mode == "drop" else set()):
                raise SystemExit(f"FAIL: the ledger ({mode}) has indexes {figures['indexes']}")
            found[mode][0].append(float(figures["seconds"]))
            found[mode][1].append(float(figures["cpu"]))
            found[mode][2].append(child.peak_mb)
            shutil.rmtree(path.parent)
    keep, drop = found["keep"], found["drop"]
    return (
        Writes("as is (schema 4)", keep[0], keep[1], max(keep[2])),
        Writes("without the 2 place indexes", drop[0], drop[1], max(drop[2])),
    )


def brief(item: Step) -> str:
    return f"{item.seconds:.2f} s, {item.rate:,.0f} rows/s, peak RSS {item.peak_mb:.1f} MB"


# --- main --------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help=f"source rows (default {ROWS:,})")
    parser.add_argument("--keep", metavar="DIR", help="build the ledgers here and keep them")
    parser.add_argument(
        "--write-rounds",
        type=int,
        default=WRITE_ROUNDS,
        help=f"rounds of step 5, each ledger (default {WRITE_ROUNDS})",
    )
    args = parser.parse_args()
    rows = args.rows
    if rows < SMALL_SHARE * CYCLE:
        parser.error(f"--rows must be at least {SMALL_SHARE * CYCLE}")
    if args.write_rounds < 1:
        parser.error("--write-rounds must be at least 1")
    small = rows // SMALL_SHARE
    started = time.perf_counter()
    print(f"cpus {os.cpu_count()}, Python {platform.python_version()}, {platform.platform()}")
    with tempfile.TemporaryDirectory(prefix="bench-export-") as name:
        tmp = Path(args.keep) if args.keep else Path(name)
        tmp.mkdir(parents=True, exist_ok=True)
        big_path, small_path = tmp / "ledger.sqlite", tmp / "ledger-small.sqlite"
        for path in (big_path, small_path):
            for stale in (path, Path(f"{path}.lock"), Path(f"{path}-wal"), Path(f"{path}-shm")):
                stale.unlink(missing_ok=True)
        build(big_path, rows)
        build(small_path, small)
        bare_python = run_child([sys.executable, "-c", "pass"])
        print(
            f"`python -c pass` peaks at {bare_python.peak_mb:.1f} MB "
            f"(this process: {own_mb():.1f} MB)"
        )

        print(
            "\n1-4. reading the ledger, each its own process (wall s: start-up and imports "
            "included; s: the call, inside the child; rows/s over s)"
        )
        print(HEADER)
        out = tmp / "out"
        bare = step(
            "sqlite3 SELECT * -> csv.writer",
            role("_bare", str(big_path), str(fresh(out) / "events.csv")),
        )
        export = step("export_results", role("_export", str(big_path), str(fresh(out))))
        status = step("job_status", role("_status", str(big_path)))
        export_small = step(
            f"export_results ({short(small)})", role("_export", str(small_path), str(fresh(out)))
        )
        status_small = step(f"job_status ({short(small)})", role("_status", str(small_path)))
        shutil.rmtree(out)
        for item in (bare, export, status, export_small, status_small):
            print(item.line())
        check_export(export, rows)
        check_export(export_small, small)
        check_status(status, rows)
        check_status(status_small, small)
        print(
            f"  bare: {bare.rows:,} event rows, {bare.figures['mb']:.0f} MB of CSV; export: "
            f"{export.rows:,} rows ({export.figures['failed']:,} failed), results.csv and "
            f"failed.csv {export.figures['mb']:.0f} MB"
        )
        print(
            f"  ratio export / bare: time {export.seconds / bare.seconds:.2f}x, "
            f"per row {export.rate and (bare.rate / export.rate):.2f}x, "
            f"peak RSS {export.peak_mb / bare.peak_mb:.2f}x"
        )
        print(
            f"  status top codes: {'; '.join(status.figures['codes'])}; "
            f"unsettled {status.figures['unsettled']:,}"
        )

        print(
            f"\n5. ledger writes: {WRITE_EVENTS:,} events on a fresh ledger, batches of "
            f"{WRITE_BATCH}, mark_in_flight then record_outcomes (DELIVERED, one attempt "
            f"each); {args.write_rounds} rounds each, alternating; s and CPU s (the child's "
            "user + system time) of the loop, inside the child; events/s over the best s"
        )
        print(
            f"{'ledger':<28} {'rounds s':>17} {'best s':>7} {'events/s':>9} {'rounds CPU s':>17} "
            f"{'best CPU':>8} {'peak MB':>8}"
        )
        keep, drop = writes(tmp, args.write_rounds)
        for ledger in (keep, drop):
            rounds = " ".join(f"{s:.2f}" for s in ledger.rounds)
            cpus = " ".join(f"{s:.2f}" for s in ledger.cpu)
            print(
                f"{ledger.indexes:<28} {rounds:>17} {ledger.best:>7.2f} {ledger.rate:>9,.0f} "
                f"{cpus:>17} {ledger.best_cpu:>8.2f} {ledger.peak_mb:>8.1f}"
            )
        print(
            f"  ratio with / without the indexes: time {keep.best / drop.best:.2f}x "
            f"(events/s {keep.rate / drop.rate:.2f}x), "
            f"CPU time {keep.best_cpu / drop.best_cpu:.2f}x"
        )

    growth = export.peak_mb / export_small.peak_mb - 1
    flat = growth <= FLAT_SHARE
    print("\nsummary")
    summary = [
        ("rows (N)", f"{rows:,}"),
        ("floor: SELECT * -> csv", brief(bare)),
        ("export_results", brief(export)),
        ("export / floor", f"{export.seconds / bare.seconds:.2f}x time, "
         f"{export.peak_mb / bare.peak_mb:.2f}x peak RSS"),
        (
            f"export per row {short(small)} -> {short(rows)}",
            f"{1e6 / export_small.rate:.1f} -> {1e6 / export.rate:.1f} us "
            f"({export_small.rate / export.rate:.2f}x; linear = 1.00x)",
        ),
        ("job_status", f"{status.seconds:.2f} s ({short(small)}: {status_small.seconds:.2f} s)"),
        (
            f"export peak RSS {short(small)} -> {short(rows)}",
            f"{export_small.peak_mb:.1f} -> {export.peak_mb:.1f} MB ({100 * growth:+.1f}%): "
            f"{'flat' if flat else 'NOT flat'} (at most +{100 * FLAT_SHARE:g}%)",
        ),
        ("ledger writes, as is", f"{keep.rate:,.0f} events/s"),
        ("ledger writes, no place idx", f"{drop.rate:,.0f} events/s"),
        (
            "writes with / without",
            f"{keep.best / drop.best:.2f}x time, {keep.best_cpu / drop.best_cpu:.2f}x CPU time",
        ),
    ]  # fmt: skip
    for label, text in summary:
        print(f"  {label:<32} {text}")
    print(f"benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
