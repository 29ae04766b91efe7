"""Delivery: budget use and 429s, events/s per events-per-request, client CPU per event.

Every server runs on 127.0.0.1 in its own process, started here; `backfill run` is always
a CLI subprocess with a fresh ledger and a fresh externalId namespace. Three parts:

1. Budget use and 429s at 1 event per request. A fake Plain (`backfill.fakeplain`, with a
   log of every GraphQL request: when it was admitted, its window, its status and the
   events it created) with a small budget; `backfill run --rate <budget>`, then
   `--rate auto --headroom 0`, each over several windows. Budget use = accepted requests
   in the whole windows between the first and the last request / (limit x those windows),
   from the server's clock (the log's count per window is checked against the fake's own
   `admitted_per_window`); 429s from its `/_fake/stats`.
2. Events/s at a fixed request budget for `--events-per-request K`, K in 1, 5, 25, 50:
   the same fake with 100 requests per 5 s window (one unit per request) and
   `--rate 20/s`; the same number of requests for every K (K x requests rows).
3. Client CPU per event against a minimal server (asyncio, prebuilt answers) at
   `--rate 100000/s`, K = 1 and 25, next to a bare httpx loop (its own process) posting
   the same bodies, built by the package's mapper and encoded before the loop starts.
   CPU is the child's user + sys time from `os.wait4`.

The sources are generated from data/sample_activity.csv, repeating its rows with new
`event_id` values (the externalId's key). Run it from the repository root:

    .venv/bin/python benchmarks/delivery.py            # about 3 minutes
    .venv/bin/python benchmarks/delivery.py --quick    # about 1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample_activity.csv"
MAPPING = ROOT / "data" / "mapping.toml"
KEY = "bench-key"
GOAL_MS_PER_EVENT = 0.3
GOAL_K = 25
_runs = itertools.count(1)


# --- child processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """A finished child process: exit code, user + sys CPU seconds, wall seconds, output."""

    returncode: int
    cpu_s: float
    wall_s: float
    stdout: str
    stderr: str


def run_child(args: Sequence[str], env: dict[str, str] | None = None) -> Child:
    """Run a process to its end; its CPU time is its own rusage (`os.wait4`), nothing else's."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=ROOT
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        return Child(
            returncode=process.returncode,
            cpu_s=usage.ru_utime + usage.ru_stime,
            wall_s=wall,
            stdout=_read(out),
            stderr=_read(err),
        )


def _read(fh: IO[bytes]) -> str:
    fh.seek(0)
    return fh.read().decode("utf-8", "replace")


def client_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIN_", "BACKFILL_"))}
    env["PLAIN_API_KEY"] = KEY
    return env


def fresh_mapping(folder: Path) -> Path:
    """data/mapping.toml with a namespace of its own, so every externalId is new."""
    text = MAPPING.read_text(encoding="utf-8")
    old = 'namespace = "acme-activity"'
    if old not in text:
        raise SystemExit(f"{MAPPING} no longer has {old!r}: update this benchmark")
    path = folder / "mapping.toml"
    path.write_text(text.replace(old, f'namespace = "{folder.name}-{time.time_ns()}"'), "utf-8")
    return path


def backfill_run(
    url: str, source: Path, rows: int, tmp: Path, *options: str
) -> tuple[Child, dict[str, Any]]:
    """`backfill run` as a subprocess on the first `rows` rows; every row must be delivered."""
    folder = tmp / f"run{next(_runs)}"
    folder.mkdir()
    args = [sys.executable, "-m", "backfill", "run", str(source)]
    args += ["--mapping", str(fresh_mapping(folder)), "--api-url", url, "--limit", str(rows)]
    args += ["--ledger", str(folder / "ledger.sqlite"), "--results-dir", str(folder / "results")]
    child = run_child([*args, "--quiet", *options], env=client_env())
    if child.returncode != 0:
        raise SystemExit(f"backfill run {' '.join(options)} exited {child.returncode}:\n{child}")
    (results,) = (folder / "results").iterdir()
    summary: dict[str, Any] = json.loads((results / "summary.json").read_text(encoding="utf-8"))
    delivered = summary["counts"].get("delivered", 0)
    if delivered != rows:
        raise SystemExit(f"backfill run {' '.join(options)} delivered {delivered} of {rows}")
    return child, summary


def make_source(path: Path, rows: int) -> None:
    """A CSV shaped like the sample: its rows over and over, each copy with new event_ids."""
    with open(SAMPLE, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        sample = list(reader)
    at = header.index("event_id")
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for n in range(rows):
            row = list(sample[n % len(sample)])
            row[at] = f"{row[at]}-{n // len(sample)}"
            writer.writerow(row)


# --- role `_fake`: the fake Plain with a request log, in its own process ------------------


class Request(NamedTuple):
    """One GraphQL request the fake rate-limited: seconds since its windows' epoch, etc."""

    at: float
    status: int
    events: int


def serve_fake(limit: str, window: str) -> None:
    """Serve a FakePlain that logs each rate-checked request; `dump` on stdin prints the log.

    The events' `createdAt` is their historical `timestamp`, not when they arrived, so
    the fake is wrapped where it admits a request (`_admit` sees its clock and window).
    """
    from backfill.fakeplain import ApiKey, FakePlain

    for name in ("_admit", "_answer_graphql", "_epoch"):
        if not hasattr(FakePlain(), name):
            raise SystemExit(f"FakePlain has no {name}: update benchmarks/delivery.py")

    class RecordingFake(FakePlain):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.log: list[Request] = []
            self._seen = threading.local()

        def _admit(self, workspace_id: str, now: float, cost: int) -> tuple[bool, dict[str, str]]:
            self._seen.at = now - self._epoch
            return super()._admit(workspace_id, now, cost)

        def _answer_graphql(self, authorization: str | None, body: bytes) -> Any:
            self._seen.at = None
            reply = super()._answer_graphql(authorization, body)
            if self._seen.at is not None:
                payload = reply.payload if isinstance(reply.payload, dict) else {}
                data = payload.get("data") if reply.status == 200 else None
                created = sum(
                    1
                    for value in (data or {}).values()
                    if isinstance(value, dict)
                    and (value.get("customerEvent") or value.get("threadEvent"))
                )
                self.log.append(Request(self._seen.at, reply.status, created))
            return reply

    fake = RecordingFake(rate_limit=int(limit), window_s=float(window), api_keys={KEY: ApiKey()})
    with fake:
        print(f"fake Plain listening on {fake.url}", flush=True)
        for line in sys.stdin:
            if line.strip() == "dump":
                log, fake.log = fake.log, []
                print(json.dumps({"log": log, "cpu_s": time.process_time()}), flush=True)


class FakeServer:
    """The parent's handle on a `_fake` process."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.process = subprocess.Popen(
            [sys.executable, __file__, "_fake", str(limit), str(window_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin, self._stdout = self.process.stdin, self.process.stdout
        line = self._stdout.readline()
        if not line.startswith("fake Plain listening on "):
            raise SystemExit(f"the fake did not start: {line!r}")
        self.url = line.split()[-1]
        self.base = self.url.removesuffix("/graphql/v1")
        self._cpu_s = 0.0

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def reset(self) -> None:
        import httpx

        httpx.post(f"{self.base}/_fake/reset", trust_env=False).raise_for_status()
        self.dump()

    def measure(self) -> tuple[Delivery, int, float]:
        """The last run's figures from the log, its 429s from /_fake/stats, the fake's CPU s.

        The log's accepted requests per window must match the fake's own count,
        `admitted_per_window` (in its stats since it has one), or the log is not trusted.
        """
        import httpx

        log, cpu = self.dump()
        found = delivery(log, self.window_s)
        stats = httpx.get(f"{self.base}/_fake/stats", trust_env=False, timeout=60).json()
        counted = stats.get("admitted_per_window")
        logged = {str(found.first_window + n): c for n, c in enumerate(found.per_window) if c}
        if counted is not None and counted != logged:
            raise SystemExit(f"the request log {logged} disagrees with /_fake/stats {counted}")
        return found, int(stats["rate_limited"]), cpu

    def dump(self) -> tuple[list[Request], float]:
        """The requests since the last dump, and the server's CPU seconds since then."""
        self._stdin.write("dump\n")
        self._stdin.flush()
        answer = json.loads(self._stdout.readline())
        cpu, self._cpu_s = answer["cpu_s"] - self._cpu_s, answer["cpu_s"]
        return [Request(*item) for item in answer["log"]], cpu


@dataclass(frozen=True)
class Delivery:
    """What the fake's log says about one run."""

    accepted: int
    rate_limited: int
    events: int
    event_requests: int
    first_window: int  # the index of the run's first window since the fake started
    per_window: list[int]  # accepted requests in each window, first to last (partial)
    events_per_s: float
    requests_per_s: float

    def budget_use(self, limit: int) -> float:
        whole = self.per_window[1:-1]
        return sum(whole) / (limit * len(whole)) if whole else math.nan


def delivery(log: list[Request], window_s: float) -> Delivery:
    first = int(min(r.at for r in log) // window_s)
    last = int(max(r.at for r in log) // window_s)
    per_window = [0] * (last - first + 1)
    for request in log:
        if request.status != 429:
            per_window[int(request.at // window_s) - first] += 1
    carrying = sorted((r for r in log if r.events), key=lambda r: r.at)
    span = carrying[-1].at - carrying[0].at
    events = sum(r.events for r in carrying)
    # n requests paced at r/s span n - 1 intervals: count what came after the first one.
    return Delivery(
        accepted=sum(per_window),
        rate_limited=sum(1 for r in log if r.status == 429),
        events=events,
        event_requests=len(carrying),
        first_window=first,
        per_window=per_window,
        events_per_s=(events - carrying[0].events) / span if span else math.nan,
        requests_per_s=(len(carrying) - 1) / span if span else math.nan,
    )


# --- part 1 -------------------------------------------------------------------------------


def part_budget(source: Path, tmp: Path, rows: int) -> None:
    limit, window = 100, 2.0
    rate = limit / window
    print(
        f"\n1. budget use and 429s at 1 event/request: fake Plain {limit} requests per "
        f"{window:g} s window ({rate:g}/s), {rows} rows, --concurrency 4"
    )
    print(
        "   budget use = accepted requests in the whole windows between the first and the last\n"
        f"   request / ({limit} x those windows), on the server's clock (the first and the last\n"
        "   window are partly outside the run and not counted); 429s from /_fake/stats"
    )
    print(
        f"   {'run':<26}{'requests':>9}{'429s':>6}{'whole windows':>15}{'budget use':>12}"
        f"{'events/s':>10}   accepted per window (first, last partial)"
    )
    with FakeServer(limit, window) as fake:
        for label, options in (
            (f"--rate {rate:g}/s", ("--rate", f"{rate:g}/s")),
            ("--rate auto --headroom 0", ("--rate", "auto", "--headroom", "0")),
        ):
            fake.reset()
            backfill_run(fake.url, source, rows, tmp, *options)
            found, rate_limited, _ = fake.measure()
            windows = " ".join(str(n) for n in found.per_window)
            print(
                f"   {label:<26}{found.accepted:>9}{rate_limited:>6}"
                f"{len(found.per_window) - 2:>15}{100 * found.budget_use(limit):>11.1f}%"
                f"{found.events_per_s:>10.1f}   {windows}"
            )


# --- part 2 -------------------------------------------------------------------------------


def part_batches(source: Path, tmp: Path, requests: int) -> None:
    limit, window = 100, 5.0
    rate = limit / window
    print(
        f"\n2. events/s at a fixed budget: fake Plain {limit} requests per {window:g} s window "
        f"({rate:g}/s, a request costs 1 whatever its events),\n   --rate {rate:g}/s, "
        f"{requests} requests' worth of rows per K (K x {requests} rows)"
    )
    print(
        "   events/s and requests/s: after the first event request, over the time from it to the"
        "\n   last (server clock); requests = accepted, including the preflight query; client"
        "\n   CPU = the child's user + sys, start-up included; fake CPU = the server process's"
    )
    print(
        f"   {'K':>3}{'rows':>7}{'requests':>9}{'429s':>6}{'events/req':>11}{'requests/s':>11}"
        f"{'events/s':>10}{'x K=1':>7}{'wall s':>8}{'client CPU ms/ev':>17}{'fake CPU ms/ev':>15}"
    )
    base: float | None = None
    with FakeServer(limit, window) as fake:
        for k in (1, 5, 25, 50):
            rows = k * requests
            fake.reset()
            child, _ = backfill_run(
                fake.url, source, rows, tmp, "--rate", f"{rate:g}/s", "--events-per-request", str(k)
            )
            found, rate_limited, fake_cpu = fake.measure()
            base = base or found.events_per_s
            print(
                f"   {k:>3}{rows:>7}{found.accepted:>9}{rate_limited:>6}"
                f"{found.events / found.event_requests:>11.1f}{found.requests_per_s:>11.2f}"
                f"{found.events_per_s:>10.1f}{found.events_per_s / base:>7.1f}"
                f"{child.wall_s:>8.1f}{1000 * child.cpu_s / rows:>17.3f}"
                f"{1000 * fake_cpu / rows:>15.3f}"
            )
        # Every row queued at once (the send queue holds 16 events at K=1 and 4 senders):
        # what the client burns while it only waits for its pacing slots.
        few, slow = 12, 4.0
        fake.reset()
        child, _ = backfill_run(fake.url, source, few, tmp, "--rate", f"{slow:g}/s")
        print(
            f"   a paced run whose rows all fit in the send queue ({few} rows at --rate "
            f"{slow:g}/s):\n   client CPU {child.cpu_s:.2f} s in {child.wall_s:.2f} s wall "
            f"({100 * child.cpu_s / child.wall_s:.0f}% of a core; start-up alone: part 3)"
        )


# --- part 3: the minimal server, the bare loop, the CPU figures ----------------------------

_ID = "tev_01BENCHMARKEVENT000000000"
_CUSTOMER = "c_01BENCHMARKCUSTOMER0000000"
_PREFLIGHT = {
    "data": {
        "myWorkspace": {"id": "w_01BENCHMARKWORKSPACE00000", "name": "Benchmark"},
        "myPermissions": {"permissions": ["customerEvent:create", "threadEvent:create"]},
    }
}
_CREATED = {"customerEvent": {"id": _ID, "customerId": _CUSTOMER}, "error": None}
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)")


def _http_answer(payload: object) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Prebuilt(asyncio.Protocol):
    """HTTP/1.1 keep-alive: answers every POST from prebuilt bytes, by what the body holds."""

    single = _http_answer({"data": {"createCustomerEvent": _CREATED}})
    preflight = _http_answer(_PREFLIGHT)
    batches: dict[int, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            found = _CONTENT_LENGTH.search(bytes(self.buffer[:end]).lower())
            total = end + 4 + (int(found.group(1)) if found else 0)
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self.transport.write(self.answer(body))

    def answer(self, body: bytes) -> bytes:
        if b"backfillEvents" in body:
            count = body.count(b"createCustomerEvent(input:")
            cached = self.batches.get(count)
            if cached is None:
                data = {f"e{n}": _CREATED for n in range(count)}
                cached = self.batches[count] = _http_answer({"data": data})
            return cached
        if b"query preflight" in body:
            return self.preflight
        return self.single


def serve_minimal() -> None:
    """Role `_minimal`: the prebuilt-answer server; prints its URL, stops at stdin's end."""

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Prebuilt, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(f"minimal server listening on http://127.0.0.1:{port}/graphql/v1", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(serve())


def bare_loop(url: str, bodies_path: str) -> None:
    """Role `_bare`: post every prebuilt body in turn with one httpx.Client; print loop CPU."""
    import httpx

    bodies = Path(bodies_path).read_bytes().split(b"\n")
    headers = {
        "Authorization": f"Bearer {KEY}",
        "Content-Type": "application/json",
        "User-Agent": "plain-backfill",
    }
    with httpx.Client(headers=headers, trust_env=False) as client:
        cpu = time.process_time()
        for body in bodies:
            client.post(url, content=body).raise_for_status()
        cpu = time.process_time() - cpu
    print(json.dumps({"requests": len(bodies), "loop_cpu_s": cpu}))


def write_bodies(source: Path, events: int, k: int, path: Path) -> int:
    """The request bodies `backfill run --events-per-request k` sends, encoded as httpx does."""
    from backfill import plain
    from backfill.mapper import compile_mapper, event_id, map_row
    from backfill.mapping import load_mapping
    from backfill.models import Event
    from backfill.readers.csv import read_rows

    mapper = compile_mapper(load_mapping(str(MAPPING)))
    mapped: list[Event] = []
    for row in itertools.islice(read_rows(str(source)), events):
        external_id = event_id(mapper, row)
        assert isinstance(external_id, str), external_id
        event = map_row(mapper, row, external_id, upsert=False)
        assert isinstance(event, Event), event
        mapped.append(event)
    bodies = [
        plain.event_body(chunk[0]) if len(chunk) == 1 else plain.batch_body(chunk)
        for chunk in (mapped[n : n + k] for n in range(0, len(mapped), k))
    ]
    path.write_bytes(
        b"\n".join(
            json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            for body in bodies
        )
    )
    return len(bodies)


def part_cpu(source: Path, tmp: Path, events: int) -> None:
    print(
        f"\n3. client CPU per event: minimal server (own process, prebuilt answers), "
        f"{events:,} events, backfill at --rate 100000/s --concurrency 4;\n   bare httpx: one "
        "httpx.Client posting the same bodies (encoded before the loop), no pacing, no parsing;\n"
        "   CPU: the child's user + sys (os.wait4), start-up included; w/o start-up: backfill\n"
        "   less its --limit 1 run, bare httpx its loop alone (time.process_time around it)"
    )
    server = subprocess.Popen(
        [sys.executable, __file__, "_minimal"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        line = server.stdout.readline()
        if not line.startswith("minimal server listening on "):
            raise SystemExit(f"the minimal server did not start: {line!r}")
        url = line.split()[-1]
        fast = ("--rate", "100000/s")
        startup, _ = backfill_run(url, source, 1, tmp, *fast)
        print(
            f"   backfill start-up (--limit 1: process start, imports, preflight, 1 event, "
            f"results): {startup.cpu_s:.2f} s CPU, {startup.wall_s:.2f} s wall"
        )
        print(
            f"   {'client':<12}{'K':>3}{'requests':>10}{'wall s':>8}{'CPU s':>8}"
            f"{'ms/request':>12}{'ms/event':>10}{'ms/event w/o start-up':>23}"
        )
        per_event: dict[tuple[str, int], tuple[float, float]] = {}
        for k in (1, GOAL_K):
            child, summary = backfill_run(
                url, source, events, tmp, *fast, "--events-per-request", str(k)
            )
            requests = int(summary["requests"])
            net = (child.cpu_s - startup.cpu_s) / events
            per_event["backfill", k] = row("backfill", k, requests, child, events, net)
        for k in (1, GOAL_K):
            bodies = tmp / f"bodies-{k}.jsonl"
            count = write_bodies(source, events, k, bodies)
            child = run_child([sys.executable, __file__, "_bare", url, str(bodies)])
            if child.returncode != 0:
                raise SystemExit(f"the bare loop exited {child.returncode}:\n{child.stderr}")
            figures = json.loads(child.stdout)
            assert figures["requests"] == count
            net = figures["loop_cpu_s"] / events
            per_event["bare httpx", k] = row("bare httpx", k, count, child, events, net)
    finally:
        server.stdin.close()
        server.wait(10)
    for i, what in enumerate(("with start-up", "without start-up")):
        ratios = ", ".join(
            f"K={k} {per_event['backfill', k][i] / per_event['bare httpx', k][i]:.1f}x"
            for k in (1, GOAL_K)
        )
        print(f"   ratio backfill / bare httpx, CPU per event {what}: {ratios}")
    ours = per_event["backfill", GOAL_K][0]
    verdict = "met" if ours <= GOAL_MS_PER_EVENT else "not met"
    print(
        f"\ngoal: at most {GOAL_MS_PER_EVENT} ms client CPU per event at K={GOAL_K}: {verdict} "
        f"({ours:.3f} ms/event, start-up included)"
    )


def row(
    name: str, k: int, requests: int, child: Child, events: int, net_s: float
) -> tuple[float, float]:
    """Print one line of part 3; return its CPU ms per event with and without start-up."""
    ms_per_event = 1000 * child.cpu_s / events
    print(
        f"   {name:<12}{k:>3}{requests:>10,}{child.wall_s:>8.1f}{child.cpu_s:>8.2f}"
        f"{1000 * child.cpu_s / requests:>12.3f}{ms_per_event:>10.3f}{1000 * net_s:>23.3f}"
    )
    return ms_per_event, 1000 * net_s


# --- main ---------------------------------------------------------------------------------

ROLES: dict[str, Callable[..., None]] = {
    "_fake": serve_fake,
    "_minimal": serve_minimal,
    "_bare": bare_loop,
}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and requests")
    args = parser.parse_args()
    budget_rows, batch_requests, cpu_events = (
        (500, 100, 5_000) if args.quick else (800, 300, 20_000)
    )
    started = time.perf_counter()
    print(
        f"cpus {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), "
        f"Python {platform.python_version()} ({sys.executable}), {platform.platform()}"
    )
    with tempfile.TemporaryDirectory(prefix="delivery-") as name:
        tmp = Path(name)
        source = tmp / "activity.csv"
        rows = max(budget_rows, 50 * batch_requests, cpu_events)
        make_source(source, rows)
        print(f"source: {rows:,} rows generated from {SAMPLE.name} (new event_id per copy)")
        part_budget(source, tmp, budget_rows)
        part_batches(source, tmp, batch_requests)
        part_cpu(source, tmp, cpu_events)
    print(f"benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
