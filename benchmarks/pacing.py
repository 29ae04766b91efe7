"""Budget use, 429s and client CPU per event of `backfill run`, next to a bare httpx loop.

Starts `backfill fake-plain` in its own process with a per-window budget, then runs
(1) `backfill run` on the sample data as a subprocess and (2) a baseline: a bare
httpx loop sending the same prebuilt createCustomerEvent requests, paced by sleeping
to the same rate. Both use a fresh externalId namespace, so every request creates.

Budget use = (accepted requests - 1) / (budget per second x seconds between the first and
the last request): 100% is a request every 1/rate seconds, with no 429.

Run it from the repository root:

    .venv/bin/python benchmarks/pacing.py            # 600 events at 100 per 5 s window
    .venv/bin/python benchmarks/pacing.py --rows 1200 --limit 100 --window 5
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample_activity.csv"
MAPPING = ROOT / "data" / "mapping.toml"
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(limit: int, window: float) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "backfill", "fake-plain", "--port", str(port)]
        + ["--rate-limit", str(limit), "--window", str(window), "--api-key", KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    server.stdout.readline()  # "fake Plain listening on ..."
    return server, f"http://127.0.0.1:{port}"


def stats(base: str) -> dict[str, object]:
    return dict(httpx.get(f"{base}/_fake/stats").json())


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_backfill(base: str, rows: int, rate: float, tmp: Path) -> dict[str, float]:
    mapping = tmp / "mapping.toml"
    mapping.write_text(
        MAPPING.read_text(encoding="utf-8").replace(
            'namespace = "acme-activity"', f'namespace = "bench-{time.time_ns()}"'
        ),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIN_", "BACKFILL_"))}
    env["PLAIN_API_KEY"] = KEY
    before = children_cpu()
    result = subprocess.run(
        [sys.executable, "-m", "backfill", "run", str(SAMPLE), "--mapping", str(mapping)]
        + ["--api-url", f"{base}/graphql/v1", "--rate", f"{rate}/s", "--limit", str(rows)]
        + ["--ledger", str(tmp / "ledger.sqlite"), "--results-dir", str(tmp / "results")]
        + ["--concurrency", "4", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    cpu = children_cpu() - before
    if result.returncode != 0:
        raise SystemExit(f"backfill run failed ({result.returncode}): {result.stderr}")
    (folder,) = (tmp / "results").iterdir()
    with open(folder / "results.csv", encoding="utf-8", newline="") as fh:
        sent = [
            (stamp(r["sent_at"]), stamp(r["answered_at"]))
            for r in csv.DictReader(fh)
            if r["status"] == "delivered"
        ]
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    first = min(s for s, _ in sent)
    last = max(s for s, _ in sent)
    return {
        "events": len(sent),
        "span_s": last - first,
        "requests": summary["requests"],
        "cpu_s": cpu,
    }


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_baseline(base: str, rows: int, rate: float) -> dict[str, float]:
    namespace = f"base-{time.time_ns()}"
    bodies = [
        {
            "query": "mutation createCustomerEvent($input: CreateCustomerEventInput!) {"
            " createCustomerEvent(input: $input) { customerEvent { id } error { code } } }",
            "variables": {
                "input": {
                    "customerIdentifier": {"emailAddress": "bench@acme.example"},
                    "externalId": f"{namespace}_{i}",
                    "title": "Benchmark event",
                    "components": [{"componentText": {"text": f"event {i}"}}],
                    "timestamp": "2024-01-01T00:00:00.000Z",
                }
            },
        }
        for i in range(rows)
    ]
    cpu_before = time.process_time()
    sent: list[float] = []
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as client:
        start = time.monotonic()
        for i, body in enumerate(bodies):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent.append(time.time())
            client.post(f"{base}/graphql/v1", json=body).raise_for_status()
    return {
        "events": len(sent),
        "span_s": sent[-1] - sent[0],
        "requests": len(sent),
        "cpu_s": time.process_time() - cpu_before,
    }


def report(name: str, figures: dict[str, float], rate: float, rate_limited: int) -> float:
    # n requests span n - 1 intervals of 1 / rate at full use.
    use = (figures["events"] - 1) / (rate * figures["span_s"]) if figures["span_s"] else 0.0
    cpu_ms = 1000 * figures["cpu_s"] / figures["events"]
    print(
        f"{name:<10} {int(figures['events']):>6} events in {figures['span_s']:6.1f}s  "
        f"{figures['events'] / figures['span_s']:6.1f} events/s  budget use {100 * use:5.1f}%  "
        f"429s {rate_limited:>3}  client CPU {cpu_ms:5.2f} ms/event"
    )
    return cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--limit", type=int, default=100, help="server budget per window")
    parser.add_argument("--window", type=float, default=5.0, help="window length, seconds")
    args = parser.parse_args()
    rate = args.limit / args.window
    print(
        f"budget {args.limit} requests / {args.window:g}s window = {rate:g}/s, {args.rows} events"
    )
    server, base = start_server(args.limit, args.window)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ours = run_backfill(base, args.rows, rate, Path(tmp))
        ours_429 = int(stats(base)["rate_limited"])  # type: ignore[call-overload]
        httpx.post(f"{base}/_fake/reset")
        time.sleep(args.window)  # start the baseline in a fresh window
        baseline = run_baseline(base, args.rows, rate)
        base_429 = int(stats(base)["rate_limited"])  # type: ignore[call-overload]
    finally:
        server.terminate()
        server.wait()
    ours_cpu = report("backfill", ours, rate, ours_429)
    base_cpu = report("bare httpx", baseline, rate, base_429)
    print(f"ratio      client CPU per event backfill / bare httpx = {ours_cpu / base_cpu:.2f}")


if __name__ == "__main__":
    main()
