"""README stays true: every command and option is documented, the public API is pinned."""

from __future__ import annotations

import re

import click
from click.testing import CliRunner

import backfill
from backfill.cli import cli
from backfill.models import RESULT_COLUMNS, Status
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_command_and_option_is_documented():
    for name, command in cli.commands.items():
        assert f"`backfill {name}" in README, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert any(f"`{opt}" in README for opt in param.opts), (name, param.opts)


def test_every_status_and_result_column_is_documented():
    for status in Status:
        assert f"`{status}`" in README
    assert ", ".join(RESULT_COLUMNS) in re.sub(r"\s+", " ", README)


def test_the_two_setup_commands_are_the_ones_ci_runs():
    assert "bash scripts/demo.sh" in README
    assert "bash scripts/test.sh" in README
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_exported_members():
    assert sorted(backfill.__all__) == sorted(
        [
            "RESULT_COLUMNS",
            "UNSET",
            "AuthError",
            "BackfillError",
            "ConfigError",
            "LedgerBusy",
            "LedgerError",
            "MappingError",
            "MappingSpec",
            "PlainError",
            "Progress",
            "RateLimited",
            "Rejected",
            "RunSummary",
            "Settings",
            "SourceError",
            "Status",
            "Transient",
            "arun",
            "load_mapping",
            "resolve",
            "run",
        ]
    )
    for name in backfill.__all__:
        assert getattr(backfill, name) is not None


def test_help_and_argument_errors():
    runner = CliRunner()
    result = runner.invoke(cli, ["run", "--help"])
    assert result.exit_code == 0 and "PLAIN_API_KEY" in result.output
    missing = runner.invoke(cli, ["run", "x.csv"])
    assert missing.exit_code == 2 and "--mapping" in missing.output
    bad_rate = runner.invoke(cli, ["run", "x.csv", "-m", "m.toml", "--rate", "fast"], env={})
    assert bad_rate.exit_code == 2 and "not a rate" in bad_rate.output


def test_the_validate_example_in_readme_is_real(tmp_path):
    import subprocess
    import sys

    block = README.split(
        "$ backfill validate data/broken_activity.csv --mapping data/mapping.toml\n"
    )[1]
    expected = block.split("```")[0].strip().splitlines()
    result = subprocess.run(
        [sys.executable, "-m", "backfill", "validate", "data/broken_activity.csv"]
        + ["--mapping", "data/mapping.toml", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    got = result.stdout.strip().splitlines()
    assert got[:-1] == expected[:-1]
    assert got[-1].startswith("invalid rows       ") and got[-1].endswith("/invalid.csv")
