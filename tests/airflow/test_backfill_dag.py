"""The example DAG under Airflow 3's `dag.test()`: fake Plain, PostgreSQL ledger, real sample."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backfill.fakeplain import FakePlain
from tests.airflow.conftest import (
    MAPPING,
    RATE,
    SAMPLE,
    connect_plain,
    ledger_counts,
    load_example,
    run_dag,
    sample_ids,
    task_states,
    two_shard_job,
    xcoms,
)

#: A @yearly run on 2026-01-01 takes the interval [2025-01-01, 2026-01-01).
YEAR_RUN = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_2025 = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def test_the_example_dag_delivers_every_row_of_its_interval_once(
    fake_plain: FakePlain, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    connect_plain(monkeypatch, fake_plain.url)
    example = load_example(
        monkeypatch,
        BACKFILL_SOURCES=SAMPLE,
        BACKFILL_MAPPING=MAPPING,
        BACKFILL_LEDGER=pg_url,
        BACKFILL_RESULTS_DIR=str(tmp_path / "results"),
        BACKFILL_SHARDS="3",
        BACKFILL_RATE=RATE,
        BACKFILL_SCHEDULE="@yearly",
    )
    dag = example.backfill_dag
    assert dag.default_args["retries"] == 3

    run = run_dag(dag, YEAR_RUN)

    assert run.state == "success"
    assert task_states(run) == {
        ("validate", -1): ("success", 1),
        ("backfill_shard", 0): ("success", 1),
        ("backfill_shard", 1): ("success", 1),
        ("backfill_shard", 2): ("success", 1),
        ("summary", -1): ("success", 1),
    }
    expected = sample_ids(*YEAR_2025)
    assert 600 < len(expected) < 2400  # a year of the sample, not all of it
    stats = fake_plain.stats()
    assert set(stats.creations) == expected and set(stats.creations.values()) == {1}
    assert set(stats.create_attempts.values()) == {1}  # nothing was even tried twice
    assert ledger_counts(pg_url) == {"delivered": len(expected)}

    returned = xcoms(run)
    shards = [returned[("backfill_shard", i)] for i in range(3)]
    assert [shard["shard"] for shard in shards] == ["0/3", "1/3", "2/3"]
    assert all(shard["exit_code"] == 0 and shard["skipped_done"] == 0 for shard in shards)
    assert {shard["since"] for shard in shards} == {"2025-01-01T00:00:00+00:00"}
    assert {shard["until"] for shard in shards} == {"2026-01-01T00:00:00+00:00"}
    # Each shard took its own slice: together, every row of the interval once.
    assert sum(shard["counts"]["delivered"] for shard in shards) == len(expected)
    assert all(shard["counts"]["delivered"] > len(expected) / 6 for shard in shards)
    summary = returned[("summary", -1)]
    assert summary["counts"] == {"delivered": len(expected)}
    assert summary["ledger"] == {"delivered": len(expected)}
    assert returned[("validate", -1)]["invalid"] == 0

    # One results folder per DAG run, holding validate's and each shard's own.
    (folder,) = (tmp_path / "results").iterdir()
    names = sorted(path.name for path in folder.iterdir())
    assert sorted(name.split("-", 2)[-1] for name in names if "shard" in name) == [
        "shard-0-of-3",
        "shard-1-of-3",
        "shard-2-of-3",
    ]
    assert any(name.startswith("validate-") for name in names)
    for shard in shards:
        results = Path(shard["results_dir"], "results.csv").read_text(encoding="utf-8")
        assert len(results.splitlines()) == 1 + shard["counts"]["delivered"]


def test_consecutive_intervals_each_deliver_their_own_rows_once(
    fake_plain: FakePlain, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    connect_plain(monkeypatch, fake_plain.url)
    example = load_example(
        monkeypatch,
        BACKFILL_SOURCES=SAMPLE,
        BACKFILL_MAPPING=MAPPING,
        BACKFILL_LEDGER=pg_url,
    )
    job = two_shard_job(pg_url, tmp_path)
    dag = example.build_dag(job, dag_id="plain_backfill_monthly", schedule="@monthly")
    july = sample_ids(datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 8, 1, tzinfo=UTC))
    august = sample_ids(datetime(2024, 8, 1, tzinfo=UTC), datetime(2024, 9, 1, tzinfo=UTC))
    assert july and august

    assert run_dag(dag, datetime(2024, 8, 1, tzinfo=UTC)).state == "success"
    assert set(fake_plain.stats().creations) == july

    second = run_dag(dag, datetime(2024, 9, 1, tzinfo=UTC))
    assert second.state == "success"
    stats = fake_plain.stats()
    assert set(stats.creations) == july | august and set(stats.creations.values()) == {1}
    assert ledger_counts(pg_url) == {"delivered": len(july) + len(august)}

    # July again (a cleared run): its rows are skipped from the ledger, nothing is sent.
    again = run_dag(dag, datetime(2024, 8, 1, tzinfo=UTC))
    assert again.state == "success"
    assert fake_plain.stats().create_attempts == stats.create_attempts
    shards = [xcoms(again)[("backfill_shard", i)] for i in range(2)]
    assert sum(shard["skipped_done"] for shard in shards) == len(july)
    assert sum(shard["requests"] for shard in shards) == 0


def test_a_broken_mapping_fails_validate_and_no_shard_runs(
    fake_plain: FakePlain,
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
):
    connect_plain(monkeypatch, fake_plain.url)
    mapping = tmp_path / "mapping.toml"
    text = Path(MAPPING).read_text(encoding="utf-8")
    mapping.write_text(text.replace('column = "occurred_at"', 'column = "happened_at"'))
    example = load_example(
        monkeypatch,
        BACKFILL_SOURCES=SAMPLE,
        BACKFILL_MAPPING=str(mapping),
        BACKFILL_LEDGER=pg_url,
        BACKFILL_RESULTS_DIR=str(tmp_path / "results"),
        BACKFILL_SHARDS="2",
        BACKFILL_SCHEDULE="@yearly",
    )
    dag = example.build_dag(example.job_from_env(os.environ), retries=0)

    run = run_dag(dag, YEAR_RUN)

    assert run.state == "failed"
    states = task_states(run)
    assert states[("validate", -1)] == ("failed", 1)
    # The summary reports the job's state anyway, then fails: no shard finished.
    assert states[("summary", -1)] == ("failed", 1)
    assert all(
        state == "upstream_failed"
        for (task, _), (state, _) in states.items()
        if task == "backfill_shard"
    )
    assert fake_plain.stats().requests == 0
    logs = capfd.readouterr()
    assert "MappingError" in logs.out + logs.err and "happened_at" in logs.out + logs.err


BROKEN = str(Path(SAMPLE).with_name("broken_activity.csv"))


@pytest.mark.parametrize("max_invalid", [None, 4], ids=["reported", "over-max-invalid"])
def test_invalid_rows_are_reported_and_fail_the_run_only_over_max_invalid(
    max_invalid: int | None,
    fake_plain: FakePlain,
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    connect_plain(monkeypatch, fake_plain.url)
    example = load_example(
        monkeypatch, BACKFILL_SOURCES=BROKEN, BACKFILL_MAPPING=MAPPING, BACKFILL_LEDGER=pg_url
    )
    job = two_shard_job(pg_url, tmp_path, BROKEN, max_invalid=max_invalid)
    dag = example.build_dag(job, schedule="@yearly", retries=1)

    run = run_dag(dag, datetime(2024, 1, 1, tzinfo=UTC))

    returned = xcoms(run)
    if max_invalid is not None:  # 5 invalid rows: validate fails, not retried, nothing sent
        assert run.state == "failed"
        assert task_states(run)[("validate", -1)] == ("failed", 1)
        assert fake_plain.stats().requests == 0
        return
    # Invalid rows are no reason to fail (or retry) a task: a retry cannot mend them.
    assert run.state == "success"
    assert {state for state, _ in task_states(run).values()} == {"success"}
    assert all(tries == 1 for _, tries in task_states(run).values())
    assert returned[("validate", -1)]["invalid"] == 5
    summary = returned[("summary", -1)]
    assert summary["counts"]["invalid"] >= 1
    assert set(summary["exit_codes"].values()) <= {0, 1} and 1 in summary["exit_codes"].values()
    assert summary["counts"]["delivered"] == len(fake_plain.stats().creations) > 0


def test_a_query_source_gets_the_interval_as_since_and_until(
    fake_plain: FakePlain, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import psycopg
    from sqlalchemy.engine import make_url

    # The sample as a table, every column text, in the ledger's database (any will do).
    dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    header = Path(SAMPLE).read_text(encoding="utf-8").splitlines()[0].split(",")
    with psycopg.connect(dsn) as conn:
        conn.execute(f"CREATE TABLE activity ({', '.join(f'{c} TEXT' for c in header)})")
        with conn.cursor().copy("COPY activity FROM STDIN WITH (FORMAT csv, HEADER)") as copy:
            copy.write(Path(SAMPLE).read_bytes())
    query = tmp_path / "activity.sql"
    # Fails unless both are bound; the rows are then kept by the window as a run keeps them.
    query.write_text(
        "SELECT * FROM activity WHERE CAST(:since AS timestamptz) < CAST(:until AS timestamptz)"
    )
    connect_plain(monkeypatch, fake_plain.url)
    example = load_example(
        monkeypatch,
        BACKFILL_SOURCE_SQL=f"@{query}",
        BACKFILL_SOURCE_URL=pg_url,
        BACKFILL_MAPPING=MAPPING,
        BACKFILL_LEDGER=pg_url,
        BACKFILL_RESULTS_DIR=str(tmp_path / "results"),
        BACKFILL_SHARDS="2",
        BACKFILL_RATE=RATE,
        BACKFILL_SCHEDULE="@monthly",
    )

    run = run_dag(example.backfill_dag, datetime(2025, 7, 1, tzinfo=UTC))

    assert run.state == "success", task_states(run)
    june = sample_ids(datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC))
    stats = fake_plain.stats()
    assert set(stats.creations) == june and set(stats.creations.values()) == {1}
    # validate checks the rows of the interval, as the shards take them.
    assert xcoms(run)[("validate", -1)]["rows_read"] == len(june)
