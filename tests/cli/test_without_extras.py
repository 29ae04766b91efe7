"""A plain install, without the `sql` extra: files and a SQLite ledger work, and the SQL
features say which extra to install (exit 2) instead of failing on an import."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import MAPPING, clean_env, cli, run_args

HIDDEN = ("psycopg", "sqlalchemy")


@pytest.fixture
def no_extras(tmp_path) -> dict[str, str]:
    """An environment in which importing psycopg or SQLAlchemy fails, as if not installed."""
    shadow = tmp_path / "shadow"
    for name in HIDDEN:
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(
            f'raise ImportError("No module named {name}", name="{name}")\n', encoding="utf-8"
        )
    path = os.pathsep.join(p for p in (str(shadow), os.environ.get("PYTHONPATH", "")) if p)
    return clean_env(PYTHONPATH=path, PLAIN_API_KEY="test-key")


def test_the_shadow_really_hides_the_extras(no_extras):
    import subprocess
    import sys

    for name in HIDDEN:
        probe = subprocess.run(
            [sys.executable, "-c", f"import {name}"], env=no_extras, capture_output=True
        )
        last = probe.stderr.decode().strip().splitlines()[-1]
        assert probe.returncode == 1 and last == f"ImportError: No module named {name}"


def test_a_run_with_a_sqlite_ledger_needs_no_extra(no_extras, fake_plain, tmp_path):
    result = cli(*run_args(fake_plain, tmp_path, "--limit", "20"), env=no_extras)
    assert result.returncode == 0, result.stderr
    assert len(fake_plain.stats().creations) == 20


def test_a_sqlite_url_names_the_ledger_file(no_extras, fake_plain, tmp_path):
    ledger = tmp_path / "as-url.sqlite"
    args = run_args(fake_plain, tmp_path, "--limit", "5")
    args[args.index("--ledger") + 1] = f"sqlite:///{ledger}"
    result = cli(*args, env=no_extras, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ledger.is_file()
    assert not (tmp_path / "sqlite:").exists()


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (
            ["--ledger", "postgresql+psycopg://u:canary-pw@127.0.0.1:9/db"],
            "pip install 'plain-backfill[sql]'",
        ),
        (
            ["--ledger", "mysql://u:canary-pw@127.0.0.1:9/db"],
            "a ledger is a SQLite file",
        ),
    ],
    ids=["postgres-ledger", "other-database-ledger"],
)
def test_a_database_ledger_without_its_extra_exits_2(no_extras, fake_plain, tmp_path, extra, said):
    args = run_args(fake_plain, tmp_path, "--limit", "5")
    at = args.index("--ledger")
    args[at : at + 2] = extra
    result = cli(*args, env=no_extras)
    assert result.returncode == 2, result.stderr
    assert said in result.stderr
    assert "Traceback" not in result.stderr and "canary-pw" not in result.stderr
    assert fake_plain.stats().creations == {}


def test_a_query_source_without_the_extra_exits_2(no_extras, tmp_path: Path):
    result = cli(
        "validate",
        "--mapping",
        MAPPING,
        "--source-sql",
        "SELECT * FROM activity",
        "--source-url",
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        "--results-dir",
        str(tmp_path / "results"),
        env=no_extras,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'plain-backfill[sql]'" in result.stderr
    assert "Traceback" not in result.stderr
