"""Fixtures of the Airflow tests. They run in their own venv: `bash scripts/test_airflow.sh`.

Airflow is too heavy to share the main test environment, so where it is not installed
(the main venv) nothing in this folder is collected. `dag.test()` runs every task in
this process, so the fake Plain server and injected faults live here too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

AIRFLOW_INSTALLED = importlib.util.find_spec("airflow") is not None
if not AIRFLOW_INSTALLED:
    # The main test environment: these tests belong to scripts/test_airflow.sh.
    collect_ignore_glob = ["*"]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "airflow" / "backfill_dag.py"
SAMPLE = str(ROOT / "data" / "sample_activity.csv")
MAPPING = str(ROOT / "data" / "mapping.toml")
#: Fast enough for the tests, far below the fake server's budget.
RATE = "60000/min"


def pytest_configure(config: pytest.Config) -> None:
    # Warnings are errors in this project, but Airflow and the libraries it pins warn
    # about each other (deprecations, SQLAlchemy on Airflow's models): not ours to fix.
    # A warning raised from the project's own code stays an error (later lines win).
    # Not in the main test run, which loads this file only to ignore the folder.
    if not AIRFLOW_INSTALLED:
        return
    for line in ("ignore", "error:::backfill", "error:::tests"):
        config.addinivalue_line("filterwarnings", line)


@pytest.fixture(scope="session", autouse=True)
def airflow_home() -> Path:
    """Airflow's home, set up (and its database migrated) by scripts/test_airflow.sh."""
    home = os.environ.get("AIRFLOW_HOME", "")
    if not home or not Path(home, "airflow.cfg").is_file():
        pytest.fail(
            "AIRFLOW_HOME must name a migrated Airflow home: run bash scripts/test_airflow.sh"
        )
    return Path(home)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of its own (a SQLAlchemy URL): the shared ledger.

    The server is the one `BACKFILL_TEST_PG_URL` names (scripts/test.sh starts one).
    Without one these tests skip, and fail under CI=true.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    url = os.environ.get("BACKFILL_TEST_PG_URL", "")

    def unavailable(reason: str) -> None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
        pytest.skip(f"no PostgreSQL: {reason} (scripts/pg.sh starts one)")

    if not url:
        unavailable("BACKFILL_TEST_PG_URL is not set")
    server = make_url(url)
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = "t_" + secrets.token_hex(6)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as exc:
        unavailable(f"{server.render_as_string()} is not reachable: {exc}")
    yield server.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PLAIN_*, BACKFILL_* or Airflow connection a developer may have set."""
    for name in list(os.environ):
        if (
            name.startswith(("PLAIN_", "BACKFILL_", "AIRFLOW_CONN_"))
            and name != "BACKFILL_TEST_PG_URL"
        ):
            monkeypatch.delenv(name)


def connect_plain(monkeypatch: pytest.MonkeyPatch, url: str, key: str = "test-key") -> None:
    """The Airflow connection `plain_default`, as a deployment sets it: JSON in the env."""
    conn = {"conn_type": "generic", "password": key, "extra": {"api_url": url}}
    monkeypatch.setenv("AIRFLOW_CONN_PLAIN_DEFAULT", json.dumps(conn))


def load_example(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """Import examples/airflow/backfill_dag.py afresh, as Airflow parses it, with `env` set."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    name = "backfill_dag_" + secrets.token_hex(4)
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def run_dag(dag: Any, logical_date: datetime) -> Any:
    """Run one DAG run with `dag.test()` and return it (a DagRun).

    The DAG is first written to Airflow's database as the DAG processor would after
    parsing it; `dag.test()` runs a DAG it finds there. A failed try is retried at once
    (as many times as the DAG says): `dag.test()` would otherwise wait out each retry
    delay (2 minutes in the example), and a test that fails would run into its timeout.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.dagbag import DagBag, sync_bag_to_db

    for task in dag.tasks:
        task.retry_delay = timedelta(0)
    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=str(EXAMPLE.parent), include_examples=False, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag.test(logical_date=logical_date)


def task_states(run: Any) -> dict[tuple[str, int], tuple[str, int]]:
    """(task id, map index) -> (state, try number) of every task instance of a run."""
    return {
        (ti.task_id, ti.map_index): (str(ti.state), ti.try_number)
        for ti in run.get_task_instances()
    }


def xcoms(run: Any) -> dict[tuple[str, int], Any]:
    """(task id, map index) -> the value each task returned, as stored in Airflow's database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.key == "return_value",
            )
        ).all()
        return {(row.task_id, row.map_index): _decoded(row.value) for row in rows}


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def sample_ids(since: datetime, until: datetime) -> set[str]:
    """The externalId of every sample row whose timestamp is in [since, until).

    Read with the standard library's ISO parser (a value without offset is UTC, as the
    mapping says), not with the backfill's own window code.
    """
    from backfill.mapper import compile_mapper, event_id
    from backfill.mapping import load_mapping
    from backfill.readers.csv import read_rows

    mapper = compile_mapper(load_mapping(MAPPING))
    ids = set()
    for row in read_rows(SAMPLE):
        at = datetime.fromisoformat(row.values["occurred_at"])
        if since <= (at if at.tzinfo is not None else at.replace(tzinfo=UTC)) < until:
            ident = event_id(mapper, row)
            assert isinstance(ident, str), ident
            ids.add(ident)
    return ids


def ledger_counts(url: str) -> dict[str, int]:
    """What the shared ledger holds, by status."""
    from backfill.ledger import open_ledger

    with open_ledger(url, readonly=True) as ledger:
        return ledger.status_counts()


def two_shard_job(ledger: str, tmp_path: Path, source: str = SAMPLE, **given: Any) -> Any:
    """A `BackfillJob` of `source` in two shards, results under tmp_path."""
    from backfill.airflow import BackfillJob

    return BackfillJob(
        sources=(source,),
        mapping=MAPPING,
        ledger=ledger,
        shards=2,
        rate=RATE,
        results_dir=str(tmp_path / "results"),
        **given,
    )
