"""Validate and resume on big CSV and Parquet sources: time and peak RSS, next to bare reads.

Generates N rows (default 5,000,000) shaped like data/sample_activity.csv (its 11 columns,
quoted commas and double quotes, non-ASCII text, about 5% multi-line descriptions, the
sample's ISO 8601 timestamp forms, unique `event_id` values: the externalId key), written
a chunk of 100,000 rows at a time, twice:

* CSV: one file, every value text, as a warehouse export;
* Parquet: files of 500,000 rows, each in row groups of 100,000 rows, typed columns
  (`occurred_at` a timestamp[us, UTC], `amount` a decimal(12, 2), empty values null, the
  rest strings). The same instants and amounts as the CSV, so both give the same events.

When N is over 1,000,000 the first 1,000,000 rows are also written as their own CSV (the
Parquet set is the first two files, hard-linked), so the same run measures both sizes.
Then, every step a fresh process started here (seconds are its wall time, interpreter
start-up and imports included; its peak RSS comes from `os.wait4`, MB are MiB):

1. For each size and format: `backfill validate SOURCE --mapping data/mapping.toml` (the
   CLI), next to a bare read of the same files: `pandas.read_csv(path, dtype=str,
   keep_default_na=False)` for CSV, `pyarrow.parquet.ParquetFile.iter_batches` (4096 rows a
   batch, as the package reads) over every file for Parquet. Every row must be valid.
2. Resume over a fully delivered ledger at 1,000,000 rows, for CSV and for Parquet: a
   ledger in which every row is `delivered` is built without sending, through the
   package's public API: `load_mapping`, `compile_mapper`, `event_id` for each row's
   externalId, `map_row` for its payload hash, and SqliteLedger's `set_meta("id_rule",
   ...)` (the value `job._check_id_rule` records), `start_run` (the mapping's hash
   and id rule, as `arun` records them), `mark_in_flight`, `record_outcomes` and
   `end_run`. Then `backfill run SOURCE --mapping data/mapping.toml --ledger LEDGER
   --api-url URL` of a fake Plain started here (`python -m backfill fake-plain --port
   0`, 127.0.0.1) with PLAIN_API_KEY=test-key must skip every row, exit 0, and the fake
   must have received no request (`GET /_fake/stats`).

When a resume misses its goal (or with --profile), the resume is run again under cProfile
(`python -m cProfile -o F -m backfill run ...`) and the top 15 functions are printed by
cumulative time, by cumulative time among the package's own, and by own time.

The data is generated in a child process too, so this process stays small: on Linux a
child's peak RSS starts at its parent's size at fork (the figure `python -c pass` peaks
at is printed as the floor). The page cache holds every file (they were just written), so
all steps read from memory alike. No network but 127.0.0.1.

Run it from the repository root:

    .venv/bin/python benchmarks/sources.py             # 5,000,000 rows, about 12 minutes
    .venv/bin/python benchmarks/sources.py --quick     # 1,000,000 rows
    .venv/bin/python benchmarks/sources.py --rows 200000 --keep DIR
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
MAPPING = "data/mapping.toml"  # relative to ROOT, every child's working directory
API_KEY = "test-key"  # one the fake accepts by default
SEED = 20261127
ROWS = 5_000_000
QUICK_ROWS = 1_000_000
SMALL_ROWS = 1_000_000  # the other size validated, and the size of the resume
CHUNK_ROWS = 100_000  # rows generated at a time; one Parquet row group
FILE_ROWS = 500_000  # rows per Parquet file
BATCH_ROWS = 4096  # pyarrow batch size, as backfill.readers.parquet reads
GOAL_MB = 300.0
FLAT_SHARE = 0.10  # "flat": the peak at N at most 10% over the peak at 1,000,000 rows
GOAL_RESUME_S = 15.0
GOAL_RESUME_ROWS = 1_000_000
PROFILE_TOP = 15
WORKSPACE_ID = "w_01FAKEWORKSPACE0000000000"  # the fake's workspace, as a run records it

COLUMNS = (
    "event_id",
    "occurred_at",
    "customer_email",
    "customer_name",
    "event_type",
    "plan",
    "amount",
    "currency",
    "url",
    "description",
    "actor",
)
#: Parquet columns stored as strings whose empty value is written as null.
NULLABLE = frozenset({"plan", "currency", "url", "description", "actor"})

# --- generating --------------------------------------------------------------------------

EVENT_TYPES = (
    ("login", 30),
    ("api_key_created", 5),
    ("api_key_revoked", 2),
    ("plan_upgraded", 4),
    ("plan_downgraded", 2),
    ("invoice_paid", 14),
    ("invoice_failed", 3),
    ("order_placed", 14),
    ("incident_opened", 5),
    ("incident_resolved", 4),
    ("seat_added", 6),
    ("export_requested", 4),
)
PLANS = ("free", "starter", "growth", "scale", "enterprise")
CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP")
DOMAINS = (
    "acme.example", "globex.test", "initech.example", "umbrella-corp.test", "hooli.example",
    "piedpiper.test", "vandelay.example", "stark.example", "wayne-enterprises.test",
    "soylent.example", "tyrell.test", "oscorp.example", "dunder-mifflin.test",
    "cafe-lumiere.test", "sakura-logistics.example", "zenith-bank.test",
)  # fmt: skip
CURATED = (
    ("Zoë Müller", "zoë.müller"),
    ("李雷", "li.lei"),
    ("O'Brien, Siobhán", "siobhan.obrien"),
    ("Дмитрий Соколов", "d.sokolov"),
    ("Wells, Jr., Thomas", "tom.wells"),
    ('Siddharth "Sid" Rao', "sid.rao"),
    ("Mårten Lindqvist", "marten+plain"),
)
FIRST = (
    "Alice", "Ben", "Carla", "David", "Elena", "Farah", "George", "Hannah", "Ivan", "Julia",
    "Kwame", "Laura", "Mateo", "Nina", "Oscar", "Paula", "Rosa", "Samuel", "Tara", "Yusuf",
)  # fmt: skip
LAST = (
    "Anderson", "Bakker", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Hughes",
    "Ito", "Jensen", "Kowalski", "Larsen", "Morales", "Novak", "Okafor", "Patel",
)  # fmt: skip
CITIES = ("Berlin, DE", "São Paulo, BR", "Zürich, CH", "東京, JP", "Austin, US", "Lagos, NG")
DESCRIPTIONS = {
    "login": (
        "Signed in via SSO (Okta) from {city}",
        "Login from new device: Chrome 128 on macOS, IP 203.0.113.{small}",
        "Session restored from remember-me cookie",
    ),
    "api_key_created": (
        'Created API key `key_{n:05d}` named "prod, read-only" with scopes read:orders',
        "**API key created**: `key_{n:05d}` (admin:*)",
    ),
    "api_key_revoked": ('Key `key_{n:05d}` revoked, reason: "employee offboarding"',),
    "plan_upgraded": (
        "Upgraded starter → growth: needed SSO, audit log and more seats",
        '**Upgrade** to scale; quote: "worth every penny, honestly"',
    ),
    "plan_downgraded": ('Downgraded to free; reason given: "budget freeze until Q{small}"',),
    "invoice_paid": (
        "Invoice in_{n:06d} paid by card ending 4242",
        "Annual invoice in_{n:06d} settled by wire transfer, PO #{n}",
    ),
    "invoice_failed": ("Payment for invoice in_{n:06d} failed: do_not_honor. Retry in 3 days",),
    "order_placed": (
        'Ordered {small} × "Extra storage, 100 GB" (billing address in {city})',
        "Order ord_{n:06d}: 1 × Onboarding workshop, promo ÉTÉ25 🚀",
    ),
    "incident_opened": ("**INC-{n:05d}** webhooks delayed by ~15 minutes; status page updated",),
    "incident_resolved": ('Resolved INC-{n:05d}: cache key collision ("tenant" vs "tenant_id")',),
    "seat_added": ("Added {small} seats (now {n}), requested by Sales, EMEA",),
    "export_requested": ("Export of all invoices as CSV requested; link valid for 7 days",),
}
FOLLOW_UPS = (
    '\nFollow-up: customer replied "thanks, all good".',
    "\n\nInternal note: check with finance before refunding.",
    "\n- step 1: reproduce\n- step 2: patch",
)
PATHS = {
    "login": "/users/sessions",
    "plan_upgraded": "/billing/subscription",
    "invoice_paid": "/invoices/in_{n:06d}",
    "invoice_failed": "/invoices/in_{n:06d}?tab=attempts",
    "order_placed": "/orders/ord_{n:06d}?tab=items&ref=backfill",
    "incident_opened": "/incidents/INC-{n:05d}#timeline",
    "incident_resolved": "/incidents/INC-{n:05d}#timeline",
}
PRICED = frozenset(
    {"plan_upgraded", "plan_downgraded", "invoice_paid", "invoice_failed", "order_placed"}
)
START = datetime(2023, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OFFSETS = tuple(
    timezone(timedelta(hours=h, minutes=m))
    for h, m in ((1, 0), (2, 0), (5, 30), (9, 0), (-3, 0), (-5, 0), (-8, 0))
)


def description_pool(rng: random.Random, per_type: int = 256) -> dict[str, list[str]]:
    """Descriptions per event type: ~5% multi-line, ~1% long, ~6% empty."""
    pool: dict[str, list[str]] = {}
    for event_type, forms in DESCRIPTIONS.items():
        texts = []
        for _ in range(per_type):
            text = rng.choice(forms).format(
                n=rng.randrange(1, 99_999), small=rng.randint(2, 9), city=rng.choice(CITIES)
            )
            roll = rng.random()
            if roll < 0.05:
                text += rng.choice(FOLLOW_UPS)
            elif roll < 0.06:
                text += " | " + " ".join(f"log line {k}: ok, 200," for k in range(60))
            elif roll < 0.12:
                text = ""
            texts.append(text)
        pool[event_type] = texts
    return pool


def people(rng: random.Random, n: int = 5000) -> list[tuple[str, str, str, str]]:
    """(name, email, domain, plan) of n customers, a few with awkward names."""
    out = []
    for i in range(n):
        if i < len(CURATED):
            name, local = CURATED[i]
        else:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            name, local = f"{first} {last}", f"{first.lower()}.{last.lower()}{i}"
        domain = rng.choice(DOMAINS)
        out.append((name, f"{local}@{domain}", domain, rng.choice(PLANS)))
    return out


def timestamp(rng: random.Random, at: datetime) -> tuple[str, datetime]:
    """One of the sample's ISO 8601 forms (~10% naive, in UTC), and the instant it says."""
    roll = rng.random()
    whole = at.replace(microsecond=0)
    if roll < 0.35:
        return whole.strftime("%Y-%m-%dT%H:%M:%SZ"), whole
    if roll < 0.55:
        milli = at.replace(microsecond=at.microsecond // 1000 * 1000)
        return milli.strftime("%Y-%m-%dT%H:%M:%S.") + f"{milli.microsecond // 1000:03d}Z", milli
    if roll < 0.80:
        zone = OFFSETS[int(roll * 1000) % len(OFFSETS)]
        return whole.astimezone(zone).isoformat(timespec="seconds"), whole
    if roll < 0.90:
        return at.isoformat(timespec="microseconds"), at
    naive = whole.replace(tzinfo=None).isoformat(sep=" " if roll < 0.95 else "T")
    return naive, whole


def chunks(rows: int) -> Iterator[tuple[dict[str, list[str]], list[int]]]:
    """The rows, CHUNK_ROWS at a time: text columns, and occurred_at in µs since the epoch.

    Row i is the same whatever `rows` is, so a smaller run's rows are a prefix of a bigger's.
    """
    rng = random.Random(SEED)
    pool = description_pool(rng)
    customers = people(rng)
    types = [name for name, weight in EVENT_TYPES for _ in range(weight)]
    micro = timedelta(microseconds=1)
    for first in range(0, rows, CHUNK_ROWS):
        cols: dict[str, list[str]] = {name: [] for name in COLUMNS}
        micros: list[int] = []
        for i in range(first, min(rows, first + CHUNK_ROWS)):
            n = (i * 48271 + 12345) % 100_000_000  # a bijection: unique for rows < 10**8
            if i % 40 == 7:
                event_id = f"{n:08d}"  # numeric, leading zeros: ids are text
            elif i % 50 == 9:
                event_id = str(10**18 + 7 * n)  # above the signed 64-bit range
            else:
                event_id = f"evt_{n:08d}"
            at = START + timedelta(seconds=20 * i, microseconds=rng.randrange(1_000_000))
            if rng.random() < 0.05:  # out of order, like a real export
                at -= timedelta(hours=rng.randrange(1, 72))
            text, instant = timestamp(rng, at)
            name, email, domain, plan = customers[int(rng.random() ** 2 * len(customers))]
            event_type = types[rng.randrange(len(types))]
            amount = currency = url = ""
            if event_type in PRICED:
                amount = f"{rng.randrange(99, 300_000) / 100:.2f}"
                currency = CURRENCIES[i % len(CURRENCIES)]
            if event_type in PATHS and rng.random() < 0.85:
                url = f"https://admin.{domain}" + PATHS[event_type].format(n=n)
            roll = rng.random()
            actor = email if roll < 0.6 else "system" if roll < 0.75 else ""
            values = (
                event_id,
                text,
                email,
                name,
                event_type,
                plan if rng.random() < 0.7 else "",
                amount,
                currency,
                url,
                pool[event_type][rng.randrange(len(pool[event_type]))],
                actor,
            )
            for column, value in zip(COLUMNS, values, strict=True):
                cols[column].append(value)
            micros.append((instant - EPOCH) // micro)
        yield cols, micros


def parquet_schema() -> Any:
    import pyarrow as pa  # type: ignore[import-untyped]

    types = {"occurred_at": pa.timestamp("us", tz="UTC"), "amount": pa.decimal128(12, 2)}
    return pa.schema([(name, types.get(name, pa.string())) for name in COLUMNS])


def parquet_table(cols: dict[str, list[str]], micros: list[int], schema: Any) -> Any:
    import pyarrow as pa

    arrays = []
    for name in COLUMNS:
        if name == "occurred_at":
            arrays.append(pa.array(micros, pa.int64()).cast(schema.field(name).type))
        elif name == "amount":
            texts = pa.array([v or None for v in cols[name]], pa.string())
            arrays.append(texts.cast(schema.field(name).type))
        elif name in NULLABLE:
            arrays.append(pa.array([v or None for v in cols[name]], pa.string()))
        else:
            arrays.append(pa.array(cols[name], pa.string()))
    return pa.Table.from_arrays(arrays, schema=schema)


@dataclass(frozen=True)
class DataSet:
    """One size of the data: a CSV file and a folder of Parquet files."""

    rows: int
    csv: Path
    parquet: Path

    def describe(self) -> str:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        files = sorted(self.parquet.glob("*.parquet"))
        groups = sum(pq.ParquetFile(path).metadata.num_row_groups for path in files)
        csv_mb = self.csv.stat().st_size / 2**20
        pq_mb = sum(path.stat().st_size for path in files) / 2**20
        return (
            f"{self.rows:>10,} rows: CSV {csv_mb:,.1f} MB (1 file), Parquet {pq_mb:,.1f} MB "
            f"({len(files)} files, {groups} row groups, snappy)"
        )


def generate(folder: Path, rows: int) -> list[DataSet]:
    """Write the data sets (SMALL_ROWS and `rows`, or one when they are equal)."""
    import pyarrow.parquet as pq

    small = min(rows, SMALL_ROWS)
    sizes = sorted({small, rows})
    sets = [DataSet(n, folder / f"activity-{n}.csv", folder / f"parquet-{n}") for n in sizes]
    big, first = sets[-1], sets[0]
    big.parquet.mkdir()
    schema = parquet_schema()
    handles: list[IO[str]] = [open(s.csv, "w", encoding="utf-8", newline="") for s in sets]
    writers = [csv.writer(fh, lineterminator="\n") for fh in handles]
    for writer in writers:
        writer.writerow(COLUMNS)
    parquet: Any = None
    written = 0
    try:
        for cols, micros in chunks(rows):
            lines = list(zip(*(cols[name] for name in COLUMNS), strict=True))
            for dataset, writer in zip(sets, writers, strict=True):
                if written < dataset.rows:
                    writer.writerows(lines[: dataset.rows - written])
            if written % FILE_ROWS == 0:
                if parquet is not None:
                    parquet.close()
                name = big.parquet / f"part-{written // FILE_ROWS:05d}.parquet"
                parquet = pq.ParquetWriter(name, schema, compression="snappy")
            parquet.write_table(parquet_table(cols, micros, schema), row_group_size=CHUNK_ROWS)
            written += len(lines)
    finally:
        for fh in handles:
            fh.close()
        if parquet is not None:
            parquet.close()
    if first is not big:  # the first files hold exactly the small set's rows
        first.parquet.mkdir()
        for n in range(first.rows // FILE_ROWS):
            part = f"part-{n:05d}.parquet"
            try:
                os.link(big.parquet / part, first.parquet / part)
            except OSError:  # a file system without hard links
                shutil.copyfile(big.parquet / part, first.parquet / part)
    return sets


# --- child processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """A finished child process: exit code, wall seconds, its own peak RSS, output."""

    returncode: int
    seconds: float
    peak_mb: float
    stdout: str
    stderr: str

    def last_json(self) -> dict[str, Any]:
        figures: dict[str, Any] = json.loads(self.stdout.strip().splitlines()[-1])
        return figures


def child_env(**extra: str) -> dict[str, str]:
    """This environment without the package's settings (BACKFILL_*, PLAIN_*), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKFILL_", "PLAIN_"))}
    return env | extra


def run_children(commands: Sequence[tuple[Sequence[str], dict[str, str] | None]]) -> list[Child]:
    """Run processes side by side to their ends; each one's seconds and peak RSS are its own.

    The peak RSS is the child's own `ru_maxrss` (`os.wait4`); `env` None is `child_env()`.
    """
    with ExitStack() as stack:
        running = []
        started = time.perf_counter()
        for args, env in commands:
            out = stack.enter_context(tempfile.TemporaryFile())
            err = stack.enter_context(tempfile.TemporaryFile())
            process = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=ROOT,
                env=env if env is not None else child_env(),
            )
            running.append((process, out, err))
        ended: dict[int, tuple[float, int, Any]] = {}
        while len(ended) < len(running):
            for process, _, _ in running:
                if process.pid not in ended:
                    pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                    if pid:
                        ended[pid] = (time.perf_counter() - started, status, usage)
            if len(ended) < len(running):
                time.sleep(0.02)
        children = []
        for process, out, err in running:
            seconds, status, usage = ended[process.pid]
            process.returncode = os.waitstatus_to_exitcode(status)
            # ru_maxrss is KiB on Linux, bytes on macOS.
            peak_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
            out.seek(0)
            err.seek(0)
            children.append(
                Child(
                    process.returncode,
                    seconds,
                    peak_mb,
                    out.read().decode("utf-8", "replace"),
                    err.read().decode("utf-8", "replace"),
                )
            )
        return children


def run_child(args: Sequence[str], env: dict[str, str] | None = None) -> Child:
    """Run one process to its end; its seconds and peak RSS are its own."""
    return run_children([(args, env)])[0]


def checked(step: str, child: Child) -> Child:
    """`child`, unless it failed."""
    if child.returncode != 0:
        raise SystemExit(
            f"FAIL: {step} exited {child.returncode}\n"
            f"--- stdout\n{child.stdout[-3000:]}\n--- stderr\n{child.stderr[-3000:]}"
        )
    return child


def role_generate(folder: str, rows: str) -> None:
    """Role `_generate`: write the data sets; print them, described, as JSON."""
    started = time.perf_counter()
    sets = generate(Path(folder), int(rows))
    seconds = time.perf_counter() - started
    described = [
        {"rows": s.rows, "csv": str(s.csv), "parquet": str(s.parquet), "text": s.describe()}
        for s in sets
    ]
    print(json.dumps({"seconds": seconds, "sets": described}))


def role_bare_csv(path: str) -> None:
    """Role `_bare_csv`: the floor for CSV, every value kept as text."""
    import pandas

    frame = pandas.read_csv(path, dtype=str, keep_default_na=False)
    print(json.dumps({"rows": len(frame)}))


def role_bare_parquet(folder: str) -> None:
    """Role `_bare_parquet`: the floor for Parquet, every batch of every file, untouched."""
    import pyarrow.parquet as pq

    rows = 0
    for path in sorted(Path(folder).glob("*.parquet")):
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            rows += batch.num_rows
        parquet.close()
    print(json.dumps({"rows": rows}))


def role_ledger(source: str, mapping: str, ledger_path: str) -> None:
    """Role `_ledger`: record every row of `source` as delivered, sending nothing.

    The same records a run that delivered every row would leave: the id rule in `meta`
    (as `job._check_id_rule` sets it), a run with the mapping's hash and id rule (as
    `arun` starts it), each event `in_flight` then `delivered` with one attempt (HTTP 200),
    its kind, timestamp and payload hash from `map_row`, its source and position as the
    readers give them, and the run ended `finished` with exit code 0.
    """
    from backfill.ids import ID_FORMAT_VERSION
    from backfill.job import new_run_id
    from backfill.ledger import SqliteLedger
    from backfill.mapper import compile_mapper, event_id, map_row
    from backfill.mapping import load_mapping
    from backfill.models import Attempt, Event, Outcome, Status
    from backfill.readers import CsvOptions, expand, read_chunks

    spec = load_mapping(mapping)
    mapper = compile_mapper(spec)
    files = expand([source])
    options = CsvOptions(
        delimiter=spec.source.delimiter,
        quotechar=spec.source.quote,
        columns=spec.source.columns,
        null=frozenset(spec.source.null),
    )
    run_id = new_run_id()
    rows = 0
    with SqliteLedger.open(ledger_path) as ledger:
        ledger.set_meta("id_rule", f"{ID_FORMAT_VERSION}:{spec.id_rule}")
        ledger.start_run(
            run_id,
            options={
                "sources": [source],
                "mapping": mapping,
                "note": "benchmarks/sources.py: recorded as delivered, nothing sent",
            },
            mapping_hash=spec.hash,
            id_rule=spec.id_rule,
            id_format_version=ID_FORMAT_VERSION,
        )
        for chunk in read_chunks(files, options=options):
            events: list[Event] = []
            for row in chunk:
                ident = event_id(mapper, row) if row.problem is None else row.problem
                if not isinstance(ident, str):
                    raise SystemExit(f"{row.source}:{row.position} has no externalId: {ident}")
                mapped = map_row(mapper, row, ident, upsert=False)
                if not isinstance(mapped, Event):
                    raise SystemExit(f"{row.source}:{row.position} is invalid: {mapped.problem}")
                events.append(mapped)
            ledger.mark_in_flight(run_id, events, mapping_hash=spec.hash, claim_s=120.0)
            sent = time.time()
            answered = sent + 0.05
            ledger.record_outcomes(
                run_id,
                [
                    (
                        event,
                        Outcome(
                            Status.DELIVERED,
                            attempts=1,
                            plain_event_id=f"ev_bench{rows + n:012d}",
                            sent_at=sent,
                            answered_at=answered,
                            latency_ms=50.0,
                        ),
                    )
                    for n, event in enumerate(events)
                ],
                [Attempt(e.external_id, 1, "delivered", sent, answered, 200) for e in events],
            )
            rows += len(events)
        ledger.end_run(
            run_id,
            state="finished",
            exit_code=0,
            counts={"delivered": rows},
            workspace_id=WORKSPACE_ID,
        )
        counts = ledger.status_counts()
    print(json.dumps({"rows": rows, "counts": counts, "run_id": run_id}))


ROLES: dict[str, Callable[..., None]] = {
    "_generate": role_generate,
    "_bare_csv": role_bare_csv,
    "_bare_parquet": role_bare_parquet,
    "_ledger": role_ledger,
}


def role(name: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), name, *args]


# --- the fake Plain ----------------------------------------------------------------------


class FakePlain:
    """`python -m backfill fake-plain --port 0` in its own process, on 127.0.0.1."""

    def __init__(self, log: Path, *options: str) -> None:
        self._log = open(log, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backfill", "fake-plain", "--port", "0", *options],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
            env=child_env(),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("fake Plain listening on http://127.0.0.1:"):
            self.close()
            raise SystemExit(f"the fake Plain did not start: {line!r}")
        self.url = line.split()[-1]
        self.base = self.url.removesuffix("/graphql/v1")
        # Straight to 127.0.0.1, whatever proxy the environment names.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def stats(self) -> dict[str, Any]:
        """The server's counters (`GET /_fake/stats`)."""
        with self._opener.open(self.base + "/_fake/stats", timeout=60) as answer:
            stats: dict[str, Any] = json.load(answer)
        return stats

    def requests(self) -> int:
        return int(self.stats()["requests"])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()

    def __enter__(self) -> FakePlain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- steps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    fmt: str
    name: str
    rows: int
    seconds: float
    peak_mb: float

    def line(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        return (
            f"{self.fmt:<8} {self.name:<30} {self.rows:>10,} {self.seconds:>8.2f} "
            f"{rate:>10,.0f} {self.peak_mb:>8.1f}"
        )


HEADER = f"{'format':<8} {'step':<30} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'peak MB':>8}"


def validate_step(fmt: str, source: Path, rows: int, results: Path) -> Step:
    """`backfill validate` as a CLI subprocess; every row must be valid."""
    args = [sys.executable, "-m", "backfill", "validate", str(source), "--mapping", MAPPING]
    child = checked(
        f"backfill validate {source.name}", run_child([*args, "--results-dir", str(results)])
    )
    counts = {
        key: int(value)
        for key, value in re.findall(r"^(rows read|valid|invalid)\s+(\d+)", child.stdout, re.M)
    }
    if counts.get("rows read") != rows or counts.get("valid") != rows:
        raise SystemExit(
            f"FAIL: validate {source} did not find {rows:,} valid rows:\n{child.stdout}"
        )
    return Step(fmt, "backfill validate", rows, child.seconds, child.peak_mb)


def bare_step(fmt: str, source: Path, rows: int) -> Step:
    name, label = (
        ("_bare_csv", "pandas.read_csv(dtype=str)")
        if fmt == "CSV"
        else ("_bare_parquet", "ParquetFile.iter_batches")
    )
    child = checked(label, run_child(role(name, str(source))))
    found = child.last_json()["rows"]
    if found != rows:
        raise SystemExit(f"FAIL: {label} read {found:,} rows of {source}, not {rows:,}")
    return Step(fmt, label, rows, child.seconds, child.peak_mb)


def ratio_line(ours: Step, floor: Step) -> str:
    return (
        f"{'':<8} ratio validate / bare read: time {ours.seconds / floor.seconds:.2f}x, "
        f"peak RSS {ours.peak_mb / floor.peak_mb:.2f}x"
    )


@dataclass(frozen=True)
class Resume:
    fmt: str
    rows: int
    ledger_s: float
    ledger_mb: float
    seconds: float
    peak_mb: float
    run_elapsed_s: float
    skipped: int
    requests_reported: int
    requests_received: int
    exit_code: int

    @property
    def at_goal_s(self) -> float:
        """The seconds at GOAL_RESUME_ROWS, at this run's pace (start-up included)."""
        return self.seconds * GOAL_RESUME_ROWS / self.rows

    @property
    def met(self) -> bool:
        return (
            self.at_goal_s < GOAL_RESUME_S
            and self.requests_received == 0
            and self.exit_code == 0
            and self.skipped == self.rows
        )


def run_args(source: Path, ledger: Path, url: str, results: Path) -> list[str]:
    return [
        "-m", "backfill", "run", str(source), "--mapping", MAPPING, "--ledger", str(ledger),
        "--api-url", url, "--results-dir", str(results),
    ]  # fmt: skip


def build_ledgers(sources: dict[str, Path], rows: int, tmp: Path) -> dict[str, Child]:
    """A fully delivered ledger per format, built side by side (`role_ledger`)."""
    formats = list(sources)
    built = run_children(
        [
            (role("_ledger", str(sources[fmt]), MAPPING, str(ledger_path(tmp, fmt))), None)
            for fmt in formats
        ]
    )
    for fmt, child in zip(formats, built, strict=True):
        checked(f"building the {fmt} ledger", child)
        figures = child.last_json()
        if figures["rows"] != rows or figures["counts"] != {"delivered": rows}:
            raise SystemExit(f"FAIL: the {fmt} ledger holds {figures['counts']}, not {rows:,}")
    return dict(zip(formats, built, strict=True))


def ledger_path(tmp: Path, fmt: str) -> Path:
    return tmp / f"ledger-{fmt.lower()}.sqlite"


def resume_step(
    fmt: str, source: Path, rows: int, tmp: Path, fake: FakePlain, built: Child
) -> Resume:
    """`backfill run` over the fully delivered ledger of `fmt`."""
    results = tmp / f"run-{fmt.lower()}"
    before = fake.requests()
    child = run_child(
        [sys.executable, *run_args(source, ledger_path(tmp, fmt), fake.url, results)],
        env=child_env(PLAIN_API_KEY=API_KEY),
    )
    received = fake.requests() - before
    folders = sorted(results.iterdir()) if results.exists() else []
    if len(folders) != 1 or not (folders[0] / "summary.json").exists():
        raise SystemExit(
            f"FAIL: backfill run ({fmt}) exited {child.returncode} with no summary\n"
            f"--- stdout\n{child.stdout[-3000:]}\n--- stderr\n{child.stderr[-3000:]}"
        )
    summary = json.loads((folders[0] / "summary.json").read_text(encoding="utf-8"))
    return Resume(
        fmt=fmt,
        rows=rows,
        ledger_s=built.seconds,
        ledger_mb=built.peak_mb,
        seconds=child.seconds,
        peak_mb=child.peak_mb,
        run_elapsed_s=float(summary["elapsed_s"]),
        skipped=int(summary["skipped_done"]),
        requests_reported=int(summary["requests"]),
        requests_received=received,
        exit_code=child.returncode,
    )


def profile_resume(fmt: str, source: Path, tmp: Path, fake: FakePlain) -> None:
    """The resume again, under cProfile (the ledger is still fully delivered)."""
    ledger = ledger_path(tmp, fmt)
    output = tmp / f"resume-{fmt.lower()}.prof"
    args = run_args(source, ledger, fake.url, tmp / f"run-{fmt.lower()}-profiled")
    before = fake.requests()
    child = checked(
        f"backfill run under cProfile ({fmt})",
        run_child(
            [sys.executable, "-m", "cProfile", "-o", str(output), *args],
            env=child_env(PLAIN_API_KEY=API_KEY),
        ),
    )
    received = fake.requests() - before
    command = " ".join(["python -m cProfile -o", output.name, *args[:-2]])
    print(
        f"\ncProfile of the {fmt} resume: {child.seconds:.1f} s under the profiler, "
        f"{received} requests\n  {command}"
    )
    tables = (
        ("cumulative", "", "cumulative time"),
        ("cumulative", "/backfill/", "cumulative time, the package's own functions"),
        ("tottime", "", "own time (tottime)"),
    )
    for key, only, what in tables:
        print(f"top {PROFILE_TOP} by {what}:")
        print(top_functions(output, key, only))


def top_functions(profile: Path, key: str, only: str = "") -> str:
    """The pstats table of the top PROFILE_TOP functions by `key` (whose path has `only`)."""
    import pstats

    text = io.StringIO()
    stats = pstats.Stats(str(profile), stream=text).sort_stats(key)
    if only:
        stats.print_stats(re.escape(only), PROFILE_TOP)
    else:
        stats.print_stats(PROFILE_TOP)
    lines = text.getvalue().splitlines()
    start = next((n for n, line in enumerate(lines) if "ncalls" in line), 0)
    shown = (re.sub(r"/\S*/", "", line) for line in lines[start:] if line.strip())
    return "\n".join(shown)


# --- main --------------------------------------------------------------------------------


def own_mb() -> float:
    """This process's peak RSS: a child's peak on Linux starts at its parent's, at fork."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(kib / (2**10 if sys.platform == "darwin" else 1) / 2**10)


def short(rows: int) -> str:
    """1,000,000 -> 1M, 250,000 -> 250k (for goal lines)."""
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows % 1000 == 0:
        return f"{rows // 1000}k"
    return f"{rows:,}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, default=ROWS, help=f"rows (default {ROWS:,})")
    size.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows")
    parser.add_argument("--keep", metavar="DIR", help="write the files here and keep them")
    parser.add_argument("--profile", action="store_true", help="profile the resumes anyway")
    args = parser.parse_args()
    rows = QUICK_ROWS if args.quick else args.rows
    if rows < 1:
        parser.error("--rows must be at least 1")
    started = time.perf_counter()
    print(
        f"cpus {os.cpu_count()}, Python {platform.python_version()}, {platform.platform()}; "
        f"mapping {MAPPING}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as name:
        tmp = Path(args.keep) if args.keep else Path(name)
        tmp.mkdir(parents=True, exist_ok=True)
        made = checked("generating", run_child(role("_generate", str(tmp), str(rows))))
        generated = made.last_json()
        sets = [DataSet(s["rows"], Path(s["csv"]), Path(s["parquet"])) for s in generated["sets"]]
        print(
            f"generated in {generated['seconds']:.1f} s, {CHUNK_ROWS:,} rows at a time "
            f"(generator peak RSS {made.peak_mb:.1f} MB), in {tmp}:"
        )
        for described in generated["sets"]:
            print("  " + described["text"])
        bare_python = run_child([sys.executable, "-c", "pass"])
        print(
            f"`python -c pass` peaks at {bare_python.peak_mb:.1f} MB "
            f"(this process: {own_mb():.1f} MB)"
        )

        print(
            "\n1. validate next to a bare read, each its own process (wall seconds, start-up "
            "and imports included)"
        )
        print(HEADER)
        peaks: dict[str, dict[int, float]] = {"CSV": {}, "Parquet": {}}
        for dataset in sets:
            for fmt, source in (("CSV", dataset.csv), ("Parquet", dataset.parquet)):
                floor = bare_step(fmt, source, dataset.rows)
                ours = validate_step(fmt, source, dataset.rows, tmp / "results")
                print(floor.line())
                print(ours.line())
                print(ratio_line(ours, floor))
                peaks[fmt][dataset.rows] = ours.peak_mb

        small = sets[0]
        print(
            f"\n2. resume over a fully delivered ledger ({small.rows:,} rows, built without "
            "sending), `backfill run` against a fake Plain on 127.0.0.1"
        )
        sources = {"CSV": small.csv, "Parquet": small.parquet}
        ledgers = build_ledgers(sources, small.rows, tmp)
        resumes: list[Resume] = []
        with FakePlain(tmp / "fake-plain.log") as fake:
            for fmt, source in sources.items():
                resumes.append(resume_step(fmt, source, small.rows, tmp, fake, ledgers[fmt]))
            print(
                f"{'format':<8} {'ledger built s':>14} {'run s':>7} {'rows/s':>9} "
                f"{'peak MB':>8} {'run elapsed s':>13} {'skipped':>10} {'requests':>8} "
                f"{'exit':>4}"
            )
            for r in resumes:
                print(
                    f"{r.fmt:<8} {r.ledger_s:>14.1f} {r.seconds:>7.2f} "
                    f"{r.rows / r.seconds:>9,.0f} {r.peak_mb:>8.1f} {r.run_elapsed_s:>13.2f} "
                    f"{r.skipped:>10,} {r.requests_received:>8} {r.exit_code:>4}"
                )
            print(
                "  ledger built: both ledgers side by side, one process each (peak "
                f"{', '.join(f'{r.ledger_mb:.0f} MB' for r in resumes)}); run: the "
                "`backfill run` process (run elapsed: its summary's own figure);\n"
                "  requests: what the fake received (its /_fake/stats); the runs' summaries "
                f"say {', '.join(str(r.requests_reported) for r in resumes)}"
            )
            for r in resumes:
                if not r.met or args.profile:
                    profile_resume(r.fmt, sources[r.fmt], tmp, fake)

        print("\ngoals")
        for r in resumes:
            projected = (
                ""
                if r.rows == GOAL_RESUME_ROWS
                else f" [{r.rows:,} rows; {r.at_goal_s:.1f} s projected to {GOAL_RESUME_ROWS:,}]"
            )
            print(
                f"{r.fmt}: resume over {r.rows:,} delivered rows: {r.seconds:.1f} s (goal under "
                f"{GOAL_RESUME_S:g} s), {r.requests_received} requests (goal 0): "
                f"{'met' if r.met else 'NOT met'}{projected}"
            )
        big = sets[-1].rows
        span = f"from {short(small.rows)} to {short(big)} rows"
        for fmt, by_rows in peaks.items():
            low, high = by_rows[small.rows], by_rows[big]
            under = max(low, high) < GOAL_MB
            if big == small.rows:
                verdict = f"not judged (one size only), under {GOAL_MB:g} MB: " + (
                    "met" if under else "NOT met"
                )
                note = f"{low:.1f} MB at {small.rows:,} rows; run without --quick for both sizes"
            else:
                flat = high <= low * (1 + FLAT_SHARE)
                verdict = "met" if under and flat else "NOT met"
                note = (
                    f"{low:.1f} MB at {small.rows:,} rows, {high:.1f} MB at {big:,}: "
                    f"{100 * (high / low - 1):+.1f}%, flat = at most +{100 * FLAT_SHARE:g}%"
                )
            print(
                f"{fmt} validate: peak RSS under {GOAL_MB:g} MB and flat {span}: {verdict} ({note})"
            )
    print(f"benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
