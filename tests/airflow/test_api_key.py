"""The API key comes from an Airflow connection, and shows up nowhere else."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from backfill.fakeplain import ApiKey, FakePlain
from tests.airflow.conftest import (
    MAPPING,
    RATE,
    SAMPLE,
    load_example,
    run_dag,
    sample_ids,
    task_states,
    xcoms,
)


def json_connection(key: str, url: str) -> str:
    return json.dumps({"conn_type": "generic", "password": key, "host": url})


def uri_connection(key: str, url: str) -> str:
    return f"generic://:{quote(key, safe='')}@?api_url={quote(url, safe='')}"


def ledger_dump(url: str) -> str:
    """Every row of every table of the ledger, as text."""
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert {"runs", "events", "attempts"} <= {name for (name,) in tables}
        return "\n".join(
            repr(conn.execute(f'SELECT * FROM "{name}"').fetchall()) for (name,) in tables
        )


def files_under(*folders: Path) -> dict[Path, bytes]:
    return {
        path: path.read_bytes()
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file()
    }


@pytest.mark.parametrize("form", [json_connection, uri_connection], ids=["json", "uri"])
def test_the_key_comes_from_the_connection_and_appears_nowhere_else(
    form,
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
):
    key = "plainApiKey_" + secrets.token_urlsafe(24)
    with FakePlain(api_keys={key: ApiKey()}, rate_limit=100_000, window_s=60.0) as fake:
        monkeypatch.setenv("AIRFLOW_CONN_PLAIN_DEFAULT", form(key, fake.url))
        # The worker's environment plays no part: this key would be refused.
        monkeypatch.setenv("PLAIN_API_KEY", "not-the-key")
        example = load_example(
            monkeypatch,
            BACKFILL_SOURCES=SAMPLE,
            BACKFILL_MAPPING=MAPPING,
            BACKFILL_LEDGER=pg_url,
            BACKFILL_RESULTS_DIR=str(tmp_path / "results"),
            BACKFILL_SHARDS="2",
            BACKFILL_RATE=RATE,
            BACKFILL_SCHEDULE="@monthly",
        )
        run = run_dag(example.backfill_dag, datetime(2025, 7, 1, tzinfo=UTC))
        stats = fake.stats()

    assert run.state == "success", task_states(run)
    june = sample_ids(datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC))
    assert set(stats.creations) == june and stats.unauthenticated == 0

    logs = capfd.readouterr()
    # The task logs were captured (this is where a leaked key would be)...
    assert "writing to workspace 'Fake Workspace'" in logs.out + logs.err
    # ...and the key is in none of them, nor in XCom, results, the ledger or Airflow's files.
    assert key not in logs.out + logs.err
    returned = xcoms(run)
    assert len(returned) == 4 and key not in repr(returned)
    assert key not in ledger_dump(pg_url)
    home = Path(os.environ["AIRFLOW_HOME"])
    for path, content in files_under(tmp_path, home).items():
        assert key.encode() not in content, path


def test_a_refused_key_fails_the_shards_at_once_without_retries(
    fake_plain: FakePlain, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AIRFLOW_CONN_PLAIN_DEFAULT", json_connection("revoked-key", fake_plain.url))
    example = load_example(
        monkeypatch,
        BACKFILL_SOURCES=SAMPLE,
        BACKFILL_MAPPING=MAPPING,
        BACKFILL_LEDGER=pg_url,
        BACKFILL_RESULTS_DIR=str(tmp_path / "results"),
        BACKFILL_SHARDS="2",
        BACKFILL_SCHEDULE="@monthly",
    )
    dag = example.build_dag(example.job_from_env(os.environ), schedule="@monthly", retries=3)

    run = run_dag(dag, datetime(2025, 7, 1, tzinfo=UTC))

    assert run.state == "failed"
    states = task_states(run)
    # Exit 4: AirflowFailException, so none of the 3 retries was spent on a refused key.
    assert states[("backfill_shard", 0)] == ("failed", 1)
    assert states[("backfill_shard", 1)] == ("failed", 1)
    # The summary still reports the job, then fails (once) so the run shows the failure.
    assert states[("summary", -1)] == ("failed", 1)
    stats = fake_plain.stats()
    assert stats.unauthenticated == 2 and not stats.create_attempts
