"""Pacing end to end: the fake server in its own process, `backfill run` in another.

Loose bounds for noisy machines (at least 90% of the budget, no 429);
`benchmarks/delivery.py` reports the precise figures.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import clean_env, cli, run_args

pytestmark = pytest.mark.timing

LIMIT, WINDOW_S = 100, 2.0
PREFLIGHT = {"query": "query { myWorkspace { id } }"}


@contextmanager
def fake_process(*args: str) -> Iterator[str]:
    """`backfill fake-plain` in its own process; yields its GraphQL URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "backfill", "fake-plain", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, process.stderr.read() if process.stderr else ""
        yield line.split()[-1]
    finally:
        process.terminate()
        process.communicate(timeout=30)


def server_stats(url: str) -> dict:
    return httpx.get(url.replace("/graphql/v1", "/_fake/stats"), timeout=30).json()


def budget_use(stats: dict) -> tuple[float, int]:
    """Requests admitted in the windows wholly between the first and the last request,
    over what those windows allow; and how many windows that is."""
    per_window = {int(k): v for k, v in stats["admitted_per_window"].items()}
    whole = range(min(per_window) + 1, max(per_window))
    admitted = sum(per_window.get(index, 0) for index in whole)
    return admitted / (LIMIT * len(whole)), len(whole)


def backfill(url: str, tmp_path: Path, rows: int, *options: str) -> subprocess.CompletedProcess:
    extra = ("--limit", str(rows), "--quiet", *options)
    return cli(*run_args(url, tmp_path, *extra), env=clean_env(PLAIN_API_KEY="test-key"))


@pytest.mark.parametrize(
    "rate", ["50/s", "auto"], ids=["rate-equal-to-the-budget", "rate-auto-no-headroom"]
)
def test_the_run_uses_the_budget_over_several_windows_without_a_429(tmp_path, rate):
    options = ["--rate", rate, "--concurrency", "6"]
    if rate == "auto":
        options += ["--headroom", "0"]
    with fake_process("--rate-limit", str(LIMIT), "--window", str(WINDOW_S)) as url:
        result = backfill(url, tmp_path, 600, *options)
        stats = server_stats(url)
    assert result.returncode == 0, result.stderr
    use, windows = budget_use(stats)
    assert windows >= 4
    assert stats["rate_limited"] == 0
    assert use >= 0.90, f"budget use {use:.1%} over {windows} windows"
    if rate == "auto":
        assert "rate auto          learnt 100 requests per 2s window, 0% left" in result.stdout


class SteadyClient:
    """Another integration on the same workspace: one request every 1/rate seconds."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.interval = url, 1.0 / rate
        self.sent = self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        headers = {"Authorization": "Bearer other-key"}
        with httpx.Client(headers=headers, timeout=10) as client:
            due = time.monotonic()
            while not self._stop.is_set():
                response = client.post(self.url, json=PREFLIGHT)
                self.sent += 1
                self.refused += response.status_code == 429
                due += self.interval
                self._stop.wait(max(0.0, due - time.monotonic()))


def test_rate_auto_leaves_other_integrations_their_share(tmp_path):
    fake = ("--rate-limit", str(LIMIT), "--window", str(WINDOW_S), "--api-key", "test-key")
    with fake_process(*fake, "--api-key", "other-key") as url:
        with SteadyClient(url, rate=10.0) as other:
            time.sleep(WINDOW_S)  # the other integration was there first
            result = backfill(url, tmp_path, 400, "--rate", "auto", "--concurrency", "6")
        stats = server_stats(url)
    assert result.returncode == 0, result.stderr
    assert other.sent >= 50
    assert other.refused <= other.sent * 0.05, f"{other.refused} of {other.sent} refused"
    backfill_429s = stats["rate_limited"] - other.refused
    assert backfill_429s <= 10
    # And the backfill still used most of what was left: 100 - 10% headroom - 20 others.
    use, _ = budget_use(stats)
    assert use >= 0.80
