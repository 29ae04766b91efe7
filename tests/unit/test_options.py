"""Every option is parsed in one place: `config.resolve`, which every command calls.

The table below pins each option's environment variable. For every command and every
option it takes, the variable set alone (no flag) must reach the settings the command
hands to the library, parsed into its typed value.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from backfill import config, pipeline
from backfill.cli import cli
from backfill.config import FailureLimit, LedgerTarget, Shard

#: Option -> (environment variable, a value to set, what the settings must then hold).
ENVIRONMENT: dict[str, tuple[str, str, Any]] = {
    "api_key": ("PLAIN_API_KEY", "k-env", lambda s: s.api_key == "k-env"),
    "api_url": (
        "PLAIN_API_URL",
        "http://127.0.0.1:9/graphql/v1",
        lambda s: s.api_url == "http://127.0.0.1:9/graphql/v1",
    ),
    "ledger": (
        "BACKFILL_LEDGER",
        "sqlite:///env.sqlite",
        lambda s: s.ledger == LedgerTarget("sqlite", "env.sqlite"),
    ),
    "results_dir": (
        "BACKFILL_RESULTS_DIR",
        "env-results",
        lambda s: s.results_dir == "env-results",
    ),
    "rate": ("BACKFILL_RATE", "12/s", lambda s: s.rate.per_s == 12.0),
    "headroom": ("BACKFILL_HEADROOM", "20%", lambda s: s.rate.headroom == 0.2),
    "concurrency": ("BACKFILL_CONCURRENCY", "3", lambda s: s.concurrency == 3),
    "max_retries": ("BACKFILL_MAX_RETRIES", "2", lambda s: s.max_retries == 2),
    "timeout_s": ("BACKFILL_TIMEOUT", "7", lambda s: s.timeout_s == 7.0),
    "limit": ("BACKFILL_LIMIT", "9", lambda s: s.limit == 9),
    "expect_workspace": (
        "BACKFILL_EXPECT_WORKSPACE",
        "w_env",
        lambda s: s.expect_workspace == "w_env",
    ),
    "allow_id_change": ("BACKFILL_ALLOW_ID_CHANGE", "yes", lambda s: s.allow_id_change),
    "upsert_customers": ("BACKFILL_UPSERT_CUSTOMERS", "on", lambda s: s.upsert_customers),
    "dry_run": ("BACKFILL_DRY_RUN", "true", lambda s: s.dry_run),
    "chunk_rows": ("BACKFILL_CHUNK_ROWS", "50", lambda s: s.chunk_rows == 50),
    "events_per_request": (
        "BACKFILL_EVENTS_PER_REQUEST",
        "5",
        lambda s: s.events_per_request == 5,
    ),
    "format": ("BACKFILL_FORMAT", "jsonl", lambda s: s.format == "jsonl"),
    "outage_limit": ("BACKFILL_OUTAGE_LIMIT", "90s", lambda s: s.outage_limit_s == 90.0),
    "max_failures": (
        "BACKFILL_MAX_FAILURES",
        "2%",
        lambda s: s.max_failures == FailureLimit(share=0.02),
    ),
    "source_sql": (
        "BACKFILL_SOURCE_SQL",
        "SELECT 1",
        lambda s: s.sql is not None and s.sql.query == "SELECT 1",
    ),
    "source_url": (
        "BACKFILL_SOURCE_URL",
        "sqlite://",
        lambda s: s.sql is not None and s.sql.url == "sqlite://",
    ),
    "shard": ("BACKFILL_SHARD", "1/3", lambda s: s.shard == Shard(1, 3)),
    "since": (
        "BACKFILL_SINCE",
        "2024-01-01",
        lambda s: str(s.window.since) == "2024-01-01 00:00:00",
    ),
    "until": (
        "BACKFILL_UNTIL",
        "2024-02-01",
        lambda s: str(s.window.until) == "2024-02-01 00:00:00",
    ),
}
#: Options never read from the environment: repeatable, or one invocation's choice.
NOT_FROM_ENVIRONMENT = {"params", "retry_rejected", "retry_code"}
#: Command parameters that are not settings (what to show, where to write an export).
NOT_SETTINGS = {"sources", "mapping", "quiet", "count", "lines", "as_json", "out", "statuses"}
COMMANDS = ("run", "validate", "preview", "status", "export")


def test_the_table_is_every_option_config_resolves():
    assert set(ENVIRONMENT) | NOT_FROM_ENVIRONMENT == set(config.OPTIONS)
    for name, (variable, _, _) in ENVIRONMENT.items():
        assert config.OPTIONS[name].env == variable and config.OPTIONS[name].from_env
    assert all(not config.OPTIONS[name].from_env for name in NOT_FROM_ENVIRONMENT)


def _option_of(param: str) -> str:
    """The setting a command parameter gives (click's names differ for a few)."""
    return {"fmt": "format", "eta_rate": "rate"}.get(param, param)


def _cases() -> list[Any]:
    cases = []
    for command in COMMANDS:
        params = {p.name for p in cli.commands[command].params if p.name}
        for param in sorted(params - NOT_SETTINGS):
            option = _option_of(param)
            if option in NOT_FROM_ENVIRONMENT:
                continue
            cases.append(pytest.param(command, option, id=f"{command}-{option}"))
    cases.append(pytest.param("run", "api_key", id="run-api_key"))  # the key has no flag
    cases.append(pytest.param("run", "chunk_rows", id="run-chunk_rows"))  # nor the chunk size
    return cases


@pytest.fixture
def captured(monkeypatch):
    """What each command hands to the library, instead of running it."""
    seen: dict[str, Any] = {}

    def capture(settings, *args, **kwargs):
        seen["settings"], seen["kwargs"] = settings, kwargs
        raise SystemExit(0)

    for name in COMMANDS:
        monkeypatch.setattr(pipeline, name, capture)
    return seen


@pytest.mark.parametrize(("command", "option"), _cases())
def test_each_command_honours_each_options_environment_variable(captured, command, option):
    variable, value, holds = ENVIRONMENT[option]
    env = {name: "" for name, _, _ in ENVIRONMENT.values()} | {variable: value}
    if option == "source_url":
        env["BACKFILL_SOURCE_SQL"] = "SELECT 1"
    sources = [] if option in ("source_sql", "source_url") else ["a.csv"]
    if option == "source_sql":
        env["BACKFILL_SOURCE_URL"] = "sqlite://"
    result = CliRunner().invoke(cli, [command, *sources, "--mapping", "m.toml"], env=env)
    assert result.exit_code == 0, result.output
    settings = captured["settings"]
    if command in ("status", "export") and option == "rate":
        # The ETA's rate: the option, else BACKFILL_RATE, else the last run's.
        assert captured["kwargs"]["rate"].per_s == 12.0
        return
    assert holds(settings), (command, option, settings)


@pytest.mark.parametrize("command", ["status", "export"])
def test_without_sources_the_ledger_commands_ignore_row_options_from_the_environment(
    captured, command
):
    env = {"BACKFILL_SHARD": "1/3", "BACKFILL_SINCE": "2024-01-01", "BACKFILL_LEDGER": "l.sqlite"}
    result = CliRunner().invoke(cli, [command], env=env)
    assert result.exit_code == 0, result.output
    settings = captured["settings"]
    assert settings.shard is None and not settings.window and not settings.sources
    assert settings.ledger == LedgerTarget("sqlite", "l.sqlite")
    # Given as flags, they are refused: without sources they would pick nothing.
    refused = CliRunner().invoke(cli, [command, "--shard", "0/2"], env=env)
    assert refused.exit_code == 2 and "--shard pick rows of the sources" in refused.output
