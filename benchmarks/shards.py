"""Shards: N `backfill run --shard I/N` processes at once, one budget, one PostgreSQL ledger.

Delivers the same rows (data/sample_activity.csv, 2,400 rows, with data/mapping.toml; or
`--rows N` generated from it, each copy with new `event_id` values) to a fake Plain with a
fixed budget of 600 requests per 10 s window (60/s, one request per event), in five
configurations, each against a fresh fake (`python -m backfill fake-plain --port 0` in its
own process, started just before the runs, so its windows count from then) and a fresh
PostgreSQL database of its own (the ledger every process of the configuration shares):

  (a) the baseline: one `backfill run` process, no shard, `--rate 60/s` (the budget);
  (b) 2 and 4 processes at once, `--shard I/N --rate 60/s` each: the workspace's budget,
      each process pacing at 1/N of it;
  (c) the same with `--rate auto --headroom 10%`: each process spends 1/N of the budget
      learnt from the fake's `x-ratelimit-*` headers, after the headroom (90% expected).

Every process is `python -m backfill run ... --ledger <the database> --quiet` with its own
results folder and the default `--concurrency 4` and `--events-per-request 1`. For each
configuration:

- wall s: from the first process's start to the last one's exit (start-up, ledger set-up
  and preflight included), measured here; events/s = rows / wall s, and its ratio to (a);
- budget used: requests the fake admitted in the whole windows between its first and its
  last window with an admitted request / (600 x those windows), from its
  `admitted_per_window` (`GET /_fake/stats`; preflight queries count, as on Plain); the
  first and the last window are partly outside the run and not counted;
- 429s: the fake's `rate_limited`;
- every row created exactly once: the fake's `creations` hold the externalId of every row
  (computed by the package's mapper) and each once; the ledger holds every row delivered;
  the processes' summary.json files add up to the rows (rows per process: the split);
- slowest run s: the longest `elapsed_s` in the processes' summary.json (inside the run,
  without interpreter start-up); for (a) and (b) also the pace bound, the biggest shard's
  rows / its 1/N of 60/s: with a fixed rate, shards share the budget only while all run;
- client CPU s: user + sys of every `backfill run` process (`os.wait4`).

PostgreSQL: a throwaway server from `bash scripts/pg.sh start` (stopped at the end), or the
one BACKFILL_TEST_PG_URL names (it must allow CREATE DATABASE). No network but 127.0.0.1.
The pace is the fake's budget, so the machine's speed matters little, but every process's
start-up is inside the wall time, and 4 processes starting at once on a small machine
start slower. Run it from the repository root:

    .venv/bin/python benchmarks/shards.py              # 2,400 rows: about 4 minutes
    .venv/bin/python benchmarks/shards.py --rows 1200  # about 2 minutes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from delivery import make_source  # noqa: E402  (the sibling benchmarks' helpers)
from sources import FakePlain  # noqa: E402
from sql import libpq, postgres, with_database  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample_activity.csv"
SAMPLE_ROWS = 2400
MAPPING = ROOT / "data" / "mapping.toml"
KEY = "bench-key"
LIMIT, WINDOW_S = 600, 10.0  # requests per window: 60/s, the whole workspace's budget
RATE = f"{LIMIT / WINDOW_S:g}/s"
HEADROOM = "10%"
SHARDS = (2, 4)


@dataclass(frozen=True)
class Config:
    name: str
    shards: int | None  # None: one process without --shard
    options: tuple[str, ...]

    @property
    def processes(self) -> int:
        return self.shards or 1

    @property
    def auto(self) -> bool:
        return "auto" in self.options


CONFIGS = [
    Config(f"(a) 1 process, --rate {RATE}", None, ("--rate", RATE)),
    *(Config(f"(b) {n} shards, --rate {RATE}", n, ("--rate", RATE)) for n in SHARDS),
    *(
        Config(
            f"(c) {n} shards, --rate auto --headroom {HEADROOM}",
            n,
            ("--rate", "auto", "--headroom", HEADROOM),
        )
        for n in SHARDS
    ),
]


# --- child processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Exit:
    """One finished `backfill run`: exit code, user + sys CPU s, when it exited, its output."""

    returncode: int
    cpu_s: float
    at: float  # time.perf_counter() when it exited
    output: str


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIN_", "BACKFILL_"))}
    env["PLAIN_API_KEY"] = KEY
    return env


def run_together(commands: Sequence[Sequence[str]]) -> tuple[float, list[Exit]]:
    """Start every command at once and wait for all: when the first started, and each exit."""
    exits: dict[int, Exit] = {}

    def wait(n: int, process: subprocess.Popen[bytes], out: Any) -> None:
        _, status, usage = os.wait4(process.pid, 0)
        at = time.perf_counter()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
        out.close()
        exits[n] = Exit(process.returncode, usage.ru_utime + usage.ru_stime, at, text)

    outputs = [tempfile.TemporaryFile() for _ in commands]
    env = child_env()
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        for command, out in zip(commands, outputs, strict=True)
    ]
    waiters = [
        threading.Thread(target=wait, args=(n, process, out))
        for n, (process, out) in enumerate(zip(processes, outputs, strict=True))
    ]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join()
    return started, [exits[n] for n in range(len(commands))]


# --- the fake Plain and the ledger's database --------------------------------------------


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server (as tests/conftest.py's `pg_url`), dropped after."""
    import psycopg

    name = "bench_shards_" + secrets.token_hex(6)
    with psycopg.connect(libpq(server_url), autocommit=True, connect_timeout=10) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(libpq(server_url), autocommit=True, connect_timeout=10) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- one configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    config: Config
    rows: int
    wall_s: float
    per_window: list[int]  # admitted requests per window, first to last (both partial)
    rate_limited: int
    split: list[int]  # rows delivered by each process
    slowest_s: float  # the longest elapsed_s of the processes' summary.json
    cpu_s: float

    @property
    def events_per_s(self) -> float:
        return self.rows / self.wall_s

    @property
    def whole_windows(self) -> int:
        return max(0, len(self.per_window) - 2)

    @property
    def budget_use(self) -> float:
        whole = self.per_window[1:-1]
        return sum(whole) / (LIMIT * len(whole)) if whole else math.nan

    @property
    def pace_bound_s(self) -> float | None:
        """With a fixed rate: the biggest shard's rows at its 1/N of the budget, in s."""
        if self.config.auto:
            return None
        return max(self.split) * self.config.processes / (LIMIT / WINDOW_S)


def check(ok: bool, message: str) -> None:
    if not ok:
        raise SystemExit(f"FAIL: {message}")


def run_config(
    config: Config, source: Path, rows: int, ids: set[str], server: str, tmp: Path
) -> Result:
    from backfill.ledger.postgres import PostgresLedger

    folder = tmp / f"config{CONFIGS.index(config)}"
    folder.mkdir()
    with (
        fresh_database(server) as ledger,
        FakePlain(
            folder / "fake-plain.log",
            "--rate-limit",
            str(LIMIT),
            "--window",
            f"{WINDOW_S:g}",
            "--api-key",
            KEY,
        ) as fake,
    ):
        commands = []
        for i in range(config.processes):
            args = [sys.executable, "-m", "backfill", "run", str(source)]
            args += ["--mapping", str(MAPPING), "--api-url", fake.url, "--ledger", ledger]
            args += ["--results-dir", str(folder / f"results-{i}"), "--quiet", *config.options]
            if config.shards is not None:
                args += ["--shard", f"{i}/{config.shards}"]
            commands.append(args)
        started, exits = run_together(commands)
        wall = max(e.at for e in exits) - started
        for i, done in enumerate(exits):
            check(done.returncode == 0, f"{config.name}: process {i} exited {done.returncode}")
        stats = fake.stats()
        with PostgresLedger.open(ledger) as book:
            in_ledger = book.status_counts()

    summaries = []
    for i in range(config.processes):
        (results,) = (folder / f"results-{i}").iterdir()
        summaries.append(json.loads((results / "summary.json").read_text(encoding="utf-8")))
    split = [int(s["counts"].get("delivered", 0)) for s in summaries]
    other = [dict(s["counts"]) for s in summaries if set(s["counts"]) - {"delivered"}]
    check(not other, f"{config.name}: rows not delivered: {other}")
    check(sum(split) == rows, f"{config.name}: the processes delivered {split}, not {rows}")
    check(in_ledger == {"delivered": rows}, f"{config.name}: the ledger holds {in_ledger}")
    creations: dict[str, int] = stats["creations"]
    check(set(creations) == ids, f"{config.name}: {len(set(creations) ^ ids)} rows missing")
    twice = {k: n for k, n in creations.items() if n != 1}
    check(not twice, f"{config.name}: created more than once: {list(twice.items())[:5]}")

    admitted = {int(k): int(n) for k, n in stats["admitted_per_window"].items()}
    first, last = min(admitted), max(admitted)
    return Result(
        config=config,
        rows=rows,
        wall_s=wall,
        per_window=[admitted.get(n, 0) for n in range(first, last + 1)],
        rate_limited=int(stats["rate_limited"]),
        split=split,
        slowest_s=max(float(s["elapsed_s"]) for s in summaries),
        cpu_s=sum(e.cpu_s for e in exits),
    )


# --- output ------------------------------------------------------------------------------

HEADER = (
    f"{'config':<42}{'procs':>6}{'wall s':>8}{'events/s':>10}{'vs (a)':>8}{'budget used':>13}"
    f"{'windows':>9}{'429s':>6}{'slowest run s':>15}{'CPU s':>7}  rows per process"
)


def percent(share: float) -> str:
    return "-" if math.isnan(share) else f"{100 * share:.1f}%"


def table_line(result: Result, baseline: Result) -> str:
    return (
        f"{result.config.name:<42}{result.config.processes:>6}{result.wall_s:>8.1f}"
        f"{result.events_per_s:>10.1f}{result.events_per_s / baseline.events_per_s:>7.2f}x"
        f"{percent(result.budget_use):>13}{result.whole_windows:>9}{result.rate_limited:>6}"
        f"{result.slowest_s:>15.1f}{result.cpu_s:>7.1f}  " + "/".join(str(n) for n in result.split)
    )


def summary_line(result: Result, baseline: Result) -> str:
    windows = " ".join(str(n) for n in result.per_window)
    bound = result.pace_bound_s
    what = "rows" if result.config.shards is None else "rows in the biggest shard"
    paced = (
        f"; pace bound {bound:.1f} s ({max(result.split):,} {what} at "
        f"{LIMIT / WINDOW_S / result.config.processes:g}/s)"
        if bound is not None
        else ""
    )
    return (
        f"{result.config.name}: {result.rows:,} rows, each created exactly once; "
        f"{result.wall_s:.1f} s first start to last exit, {result.events_per_s:.1f} events/s "
        f"= {result.events_per_s / baseline.events_per_s:.2f}x (a); budget used "
        f"{percent(result.budget_use)} over {result.whole_windows} whole windows "
        f"(admitted per window: {windows}); {result.rate_limited} 429s; slowest run "
        f"{result.slowest_s:.1f} s inside{paced}"
    )


def expected_ids(source: Path) -> set[str]:
    """The externalId of every row of `source`, computed by the package's mapper."""
    from backfill.mapper import compile_mapper, event_id
    from backfill.mapping import load_mapping
    from backfill.readers.csv import read_rows

    mapper = compile_mapper(load_mapping(str(MAPPING)))
    ids = [event_id(mapper, row) for row in read_rows(str(source))]
    found = {i for i in ids if isinstance(i, str)}
    check(len(found) == len(ids), f"{source}: {len(ids) - len(found)} rows without an id")
    return found


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=int,
        default=SAMPLE_ROWS,
        help=f"rows (default {SAMPLE_ROWS:,}: the sample itself; else generated from it)",
    )
    args = parser.parse_args()
    if args.rows < 10 * LIMIT / WINDOW_S:
        parser.error(f"--rows must be at least {10 * LIMIT / WINDOW_S:g} (10 s of budget)")
    started = time.perf_counter()
    print(
        f"cpus {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as name, postgres() as server:
        tmp = Path(name)
        if args.rows == SAMPLE_ROWS:
            source = SAMPLE
            print(f"source: {SAMPLE.relative_to(ROOT)} ({SAMPLE_ROWS:,} rows)")
        else:
            source = tmp / "activity.csv"
            make_source(source, args.rows)
            print(f"source: {args.rows:,} rows generated from {SAMPLE.name}")
        ids = expected_ids(source)
        check(len(ids) == args.rows, f"{source}: {len(ids)} distinct ids, not {args.rows}")
        print(
            f"fake Plain: {LIMIT} requests per {WINDOW_S:g} s window ({RATE}), a fresh one and "
            "a fresh PostgreSQL database per configuration; mapping "
            f"{MAPPING.relative_to(ROOT)}, --concurrency 4, 1 event per request\n"
        )
        results: list[Result] = []
        for config in CONFIGS:
            result = run_config(config, source, args.rows, ids, server, tmp)
            results.append(result)
            print(summary_line(result, results[0]), flush=True)

    baseline = results[0]
    print(
        "\nwall s: first start to last exit; events/s: rows / wall s; budget used: admitted "
        f"requests in whole windows / ({LIMIT} x windows);\nslowest run s: the longest "
        "elapsed_s in summary.json; CPU s: user + sys of every backfill process"
    )
    print(HEADER)
    for result in results:
        print(table_line(result, baseline))
    print(
        f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"benchmark took {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
