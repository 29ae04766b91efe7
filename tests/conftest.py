"""Helpers shared by the suites; the `fake_plain` fixture comes from `backfill.pytest_plugin`."""

from __future__ import annotations

import csv
import itertools
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from backfill.config import resolve
from backfill.fakeplain import FakePlain

# Property tests explore at random on a developer's machine; CI runs them the same way
# every time, so a landing never depends on luck. No deadlines: machines are noisy.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = str(ROOT / "data" / "sample_activity.csv")
MAPPING = str(ROOT / "data" / "mapping.toml")
SAMPLE_ROWS = 2400


def settings_for(fake: FakePlain, tmp_path: Path, **given):
    """Settings for a run against `fake`, everything inside tmp_path, environment ignored."""
    options = {
        "api_key": "test-key",
        "api_url": fake.url,
        "ledger": str(tmp_path / "ledger.sqlite"),
        "results_dir": str(tmp_path / "results"),
        "rate": "2000/s",
        "concurrency": 8,
        **given,
    }
    sources = tuple(options.pop("sources", (SAMPLE,)))
    mapping = options.pop("mapping", MAPPING)
    return resolve(sources=sources, mapping=mapping, trust_env=False, **options)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any PLAIN_* or BACKFILL_* a developer may have set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIN_", "BACKFILL_"))}
    env.update(extra)
    return env


#: `python -m backfill`, once the module constants named in its first argument (JSON,
#: "module.NAME": value) are set: a name that does not exist fails the run.
_SET_CONSTANTS_THEN_RUN = """
import importlib, json, runpy, sys
for target, value in json.loads(sys.argv.pop(1)).items():
    module_name, name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    if not hasattr(module, name):
        sys.exit(f"no constant {target} to set")
    setattr(module, name, value)
runpy.run_module("backfill", run_name="__main__", alter_sys=True)
"""


def backfill_command(constants: dict[str, float] | None = None) -> list[str]:
    """`python -m backfill`; with `constants` ({"backfill.job.STOP_GRACE_S": 4.0}), the
    run uses those values instead of the package's, for a test that is not about them
    (how long a wait is) but would otherwise sit it out."""
    if not constants:
        return [sys.executable, "-m", "backfill"]
    return [sys.executable, "-c", _SET_CONSTANTS_THEN_RUN, json.dumps(constants)]


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 180,
    constants: dict[str, float] | None = None,
):
    """Run `python -m backfill ARGS` as a real subprocess."""
    return subprocess.run(
        [*backfill_command(constants), *args],
        env=env if env is not None else clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def cli_popen(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    constants: dict[str, float] | None = None,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*backfill_command(constants), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def sample_ids(limit: int | None = None) -> set[str]:
    """The externalId of every sample row (of the first `limit`), computed by the mapper."""
    from backfill.mapper import compile_mapper, event_id
    from backfill.mapping import load_mapping
    from backfill.readers.csv import read_rows

    mapper = compile_mapper(load_mapping(MAPPING))
    rows = itertools.islice(read_rows(SAMPLE), limit)
    ids = {event_id(mapper, row) for row in rows}
    assert all(isinstance(i, str) for i in ids)
    return ids  # type: ignore[return-value]


def run_args(fake: FakePlain | str, tmp_path: Path, *extra: str, source: str = SAMPLE) -> list[str]:
    """`backfill run` of the sample (or `source`) against `fake`, ledger and results in tmp_path."""
    return [
        "run",
        source,
        "--mapping",
        MAPPING,
        "--api-url",
        fake if isinstance(fake, str) else fake.url,
        "--ledger",
        str(tmp_path / "ledger.sqlite"),
        "--results-dir",
        str(tmp_path / "results"),
        *extra,
    ]


def sample_with_bad_rows(tmp_path: Path, every: int) -> str:
    """A copy of the sample whose every `every`-th row has a timestamp that is not one."""
    path = tmp_path / "some_bad.csv"
    with (
        open(SAMPLE, encoding="utf-8", newline="") as src,
        open(path, "w", encoding="utf-8", newline="") as out,
    ):
        reader = csv.DictReader(src)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        for n, row in enumerate(reader):
            if n % every == every - 1:
                row["occurred_at"] = "not a time"
            writer.writerow(row)
    return str(path)


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database of its own (a SQLAlchemy URL), dropped afterwards.

    The server is the one `BACKFILL_TEST_PG_URL` names (scripts/test.sh starts one with
    scripts/pg.sh). Without one these tests skip, but fail under CI=true.
    """
    url = os.environ.get("BACKFILL_TEST_PG_URL", "")

    def unavailable(reason: str):
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
        pytest.skip(f"no PostgreSQL: {reason} (scripts/pg.sh starts one)")

    if not url:
        unavailable("BACKFILL_TEST_PG_URL is not set")
    try:
        import psycopg
        from sqlalchemy.engine import make_url
    except ImportError as exc:
        unavailable(f"{exc.name} is not installed (pip install -e '.[dev]')")
    server = make_url(url)
    name = "t_" + secrets.token_hex(6)
    admin = libpq(server)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as exc:
        unavailable(f"{server.render_as_string()} is not reachable: {exc}")
    yield server.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def libpq(url) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://...`) as psycopg's own connection string."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
