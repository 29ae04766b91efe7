"""The exit codes a scheduler acts on, each through the real CLI (the rest are in
test_run_cli.py and test_crash_resume.py)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from backfill.fakeplain import FakePlain, Faults
from backfill.ledger import SqliteLedger
from tests.conftest import (
    SAMPLE,
    SAMPLE_ROWS,
    clean_env,
    cli,
    cli_popen,
    run_args,
    sample_with_bad_rows,
)

ENV = clean_env(PLAIN_API_KEY="test-key")


def args(url: str, tmp_path: Path, *extra: str, source: str = SAMPLE) -> list[str]:
    return run_args(url, tmp_path, "--quiet", *extra, source=source)


def test_3_when_max_failures_is_exceeded(tmp_path):
    source = sample_with_bad_rows(tmp_path, every=2)
    with FakePlain(rate_limit=100_000) as fake:
        result = cli(*args(fake.url, tmp_path, "--max-failures", "5%", source=source), env=ENV)
    assert result.returncode == 3, result.stderr
    assert "stopped by --max-failures 5.0%" in result.stdout


def test_5_when_plain_stops_answering_mid_run_for_longer_than_the_outage_limit(tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        process = cli_popen(
            *args(fake.url, tmp_path, "--rate", "200/s", "--outage-limit", "2s"), env=ENV
        )
        deadline = time.monotonic() + 60
        while len(fake.stats().creations) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        fake.faults = Faults(outage_until=time.monotonic() + 60)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 5, stderr
        assert "Plain is not answering" in stderr and "outage limit is 2s" in stdout
        delivered = len(fake.stats().creations)
        assert delivered < SAMPLE_ROWS

        fake.faults = Faults()
        resumed = cli(*args(fake.url, tmp_path, "--rate", "2000/s"), env=ENV)
        stats = fake.stats()
    assert resumed.returncode == 0, resumed.stderr
    assert len(stats.creations) == SAMPLE_ROWS and set(stats.creations.values()) == {1}


def test_6_when_another_live_run_holds_the_ledger(tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        first = cli_popen(*args(fake.url, tmp_path, "--rate", "100/s"), env=ENV)
        deadline = time.monotonic() + 60
        while not fake.stats().creations and time.monotonic() < deadline:
            time.sleep(0.02)
        second = cli(*args(fake.url, tmp_path), env=ENV)
        first.terminate()
        first.communicate(timeout=60)
    assert second.returncode == 6, second.stderr
    assert "re-run later" in second.stderr or "in use" in second.stderr
    with SqliteLedger.open(str(tmp_path / "ledger.sqlite")) as ledger:
        assert set(ledger.status_counts()) <= {"delivered", "in_flight"}


def test_one_signal_during_a_stop_for_another_reason_lets_the_run_end_cleanly(tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        process = cli_popen(*args(fake.url, tmp_path, "--rate", "100/s"), env=ENV)
        deadline = time.monotonic() + 60
        while len(fake.stats().creations) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        # Slow answers keep requests in flight; the revoked key stops the run (exit 4).
        fake.faults = Faults(latency_ms=(1500, 2000))
        time.sleep(0.3)
        fake.revoke("test-key")
        # Signal only once the run has begun stopping for the rejected key.
        assert process.stderr is not None
        seen = []
        while not any("letting requests in flight finish" in line for line in seen):
            line = process.stderr.readline()
            assert line, "".join(seen)
            seen.append(line)
        process.send_signal(signal.SIGINT)
        stdout, rest = process.communicate(timeout=60)
        stderr = "".join(seen) + rest
    # The signal did not cut the stop short: the run kept its reason and wrote its results.
    assert process.returncode == 4, stderr
    assert "stopped (exit 4)" in stdout
    assert list((tmp_path / "results").glob("*/summary.json"))
    with SqliteLedger.open(str(tmp_path / "ledger.sqlite")) as ledger:
        assert "in_flight" not in ledger.status_counts()
