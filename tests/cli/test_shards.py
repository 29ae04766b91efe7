"""Shards as Airflow runs them: separate processes, one PostgreSQL ledger, one budget."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from backfill.fakeplain import FakePlain
from backfill.ledger.postgres import PostgresLedger
from tests.conftest import clean_env, cli, cli_popen, run_args, sample_ids

pytestmark = pytest.mark.timing

ENV = clean_env(PLAIN_API_KEY="test-key")
LIMIT = 120  # requests a window, the whole workspace's budget


def _shards(fake: FakePlain, ledger: str, tmp_path, count: int, *extra: str) -> list[str]:
    runs = [
        cli_popen(
            *run_args(fake, tmp_path, "--ledger", ledger, "--shard", f"{i}/{count}", *extra),
            env=ENV,
        )
        for i in range(count)
    ]
    outputs = [run.communicate(timeout=240) for run in runs]
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr
    return [stdout for stdout, _ in outputs]


def test_two_shard_processes_deliver_every_row_once_within_the_budget(pg_url, tmp_path):
    with FakePlain(rate_limit=LIMIT * 5, window_s=5.0) as fake:
        # Each shard paces at half of --rate: together 500 requests a 5 s window, where
        # each at the whole --rate would send 1000 of the 600 Plain allows. The margin
        # is for the windows' edges: two processes that cannot see each other's requests in
        # flight may each put one or two more into a window than an even share.
        _shards(fake, pg_url, tmp_path, 2, "--rate", "100/s", "--limit", "1200")
        stats = fake.stats()
    assert stats.rate_limited == 0
    assert stats.max_requests_in_window <= LIMIT * 5
    assert len(stats.creations) == 1200 and set(stats.creations.values()) == {1}
    with PostgresLedger.open(pg_url) as ledger:
        assert ledger.status_counts() == {"delivered": 1200}
        by_run = dict(ledger.query("SELECT delivered_by, COUNT(*) FROM events GROUP BY 1"))
    assert len(by_run) == 2 and all(450 < n < 750 for n in by_run.values())
    folders = {p.name.split("-", 2)[-1] for p in (tmp_path / "results").iterdir()}
    assert folders == {"shard-0-of-2", "shard-1-of-2"}
    # status and export read the shared PostgreSQL ledger: both shards, merged.
    shown = cli("status", "--ledger", pg_url, "--json", env=ENV)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["counts"] == {"delivered": 1200} and status["left"] == 0
    assert sorted(run["shard"] for run in status["runs"]) == ["0/2", "1/2"]
    assert sum(run["delivered"] for run in status["runs"]) == 1200
    exported = cli("export", "--ledger", pg_url, "--out", str(tmp_path / "export"), env=ENV)
    assert exported.returncode == 0, exported.stderr
    merged = pd.read_csv(tmp_path / "export" / "results.csv")
    assert len(merged) == 1200 and set(merged["run_id"]) == set(by_run)


def test_shards_learning_the_budget_share_it_and_leave_the_headroom_once(pg_url, tmp_path):
    # 120 requests a 2 s window, 96 without the headroom: 1200 rows take 12 windows.
    with FakePlain(rate_limit=LIMIT, window_s=2.0) as fake:
        _shards(fake, pg_url, tmp_path, 2, "--rate", "auto", "--headroom", "20%", "--limit", "1200")
        stats = fake.stats()
    assert set(stats.creations) == sample_ids(1200) and set(stats.creations.values()) == {1}
    assert stats.rate_limited == 0
    full = sorted(stats.admitted_per_window.items(), key=lambda kv: int(kv[0]))[2:-2]
    assert full, stats.admitted_per_window
    used = sum(n for _, n in full) / (len(full) * LIMIT)
    # Together about 80% of each window: the headroom was left once, not once per shard,
    # and neither shard took its sibling's requests for other traffic.
    print(f"shards used {used:.0%} of the budget")
    assert 0.6 <= used <= 0.85, stats.admitted_per_window
