"""The `backfill` command: parse options, call the library, render. No logic lives here."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from backfill import config, pipeline
from backfill.errors import BackfillError
from backfill.models import Progress
from backfill.reports import render_summary, render_validation

_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "parquet"]),
    help="Read every source as this format [default: from each file's name: .csv, .tsv, "
    ".jsonl, .ndjson, .json, .parquet, each maybe .gz, .bz2, .xz or .zst].",
)


_F = TypeVar("_F", bound=Callable[..., Any])


def _stacked(*decorators: Callable[[Any], Any]) -> Callable[[_F], _F]:
    """One decorator applying `decorators` as if written above a command in this order."""

    def apply(command: _F) -> _F:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


#: `--source-sql`, `--source-url` and `--param`: rows from a query instead of files.
_sql_options = _stacked(
    click.option(
        "--source-sql",
        help="Read rows from this SQL query instead of files (@FILE reads it from a "
        "file); needs --source-url. Install: pip install 'plain-backfill[sql]'.",
    ),
    click.option(
        "--source-url",
        help="The SQLAlchemy URL of the database --source-sql runs on, e.g. "
        "postgresql+psycopg://user@host:5432/db [env BACKFILL_SOURCE_URL].",
    ),
    click.option(
        "--param",
        "params",
        multiple=True,
        help="A query parameter as NAME=VALUE, bound to :NAME in --source-sql (repeatable).",
    ),
)


#: `--shard`, `--since` and `--until`: the part of the rows a command takes.
_selection_options = _stacked(
    click.option(
        "--shard",
        help="Take shard I of N (0 <= I < N, e.g. Airflow's map_index): a stable slice of "
        "the rows by externalId hash, at 1/N of the rate budget [env BACKFILL_SHARD].",
    ),
    click.option(
        "--since",
        help="Only rows whose timestamp is at or after this ISO 8601 time (no offset: the "
        "mapping's timezone); bound to :since in --source-sql.",
    ),
    click.option(
        "--until",
        help="Only rows whose timestamp is before this ISO 8601 time; bound to :until in "
        "--source-sql.",
    ),
)


def _given(value: Any) -> Any:
    """click gives None (or False for flags) when an option is absent: that is UNSET."""
    return config.UNSET if value is None or value is False else value


def _settings(
    sources: tuple[str, ...], mapping: str, fmt: str | None, options: dict[str, Any]
) -> config.Settings:
    """Settings from a command's options, through the one `config.resolve`."""
    return config.resolve(
        sources=sources,
        mapping=mapping,
        format=_given(fmt),
        **{k: _given(v) for k, v in options.items()},
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="plain-backfill")
@click.option("-v", "--verbose", count=True, help="More log lines on stderr (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Backfill historical activity into Plain as customer or thread events, exactly once."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    # fsspec's http filesystem logs each URL at DEBUG, a signed URL's query included.
    logging.getLogger("fsspec.http").setLevel(max(level, logging.INFO))


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--mapping", "-m", required=True, help="The mapping file (TOML).")
@_sql_options
@click.option(
    "--ledger",
    help="Ledger: a SQLite file, or a PostgreSQL URL (postgresql+psycopg://...) [default:"
    " .backfill/<stem>.sqlite beside the mapping; env BACKFILL_LEDGER].",
)
@click.option(
    "--results-dir", help="Where each run's folder of result files goes [default: results]."
)
@click.option(
    "--rate",
    help="Request budget, e.g. 450/min or 7.5/s, or auto to learn it from Plain's rate-limit "
    "headers [default: 450/min].",
)
@click.option(
    "--headroom",
    help="With --rate auto: the share of the budget left to other integrations, e.g. 10% "
    "[default: 10%].",
)
@click.option(
    "--events-per-request",
    type=int,
    help="Events in one GraphQL request (aliased mutations), 1 to 100 [default: 1]. Whether "
    "Plain counts such a request once is not documented; lowered if Plain refuses it.",
)
@click.option(
    "--outage-limit",
    help="Stop with exit 5 when Plain has not answered for this long, e.g. 90s, 10m "
    "[default: 10m].",
)
@click.option(
    "--max-failures",
    help="Stop with exit 3 when more rows than this are invalid or rejected: a count (50) or "
    "a share of the rows answered so far (2%, judged after 100 rows).",
)
@click.option("--concurrency", type=int, help="Requests in flight at once [default: 4].")
@click.option(
    "--max-retries", type=int, help="Retries for 5xx, timeouts, dropped connections [default: 5]."
)
@click.option("--timeout", "timeout_s", type=float, help="Seconds per request [default: 30].")
@click.option("--limit", type=int, help="Take only the first N rows (for a first try).")
@click.option(
    "--api-url", help="Plain's GraphQL endpoint [env PLAIN_API_URL; default: production]."
)
@click.option(
    "--expect-workspace", help="Refuse to send unless the key writes to this workspace id."
)
@click.option(
    "--allow-id-change", is_flag=True, help="Resume a ledger written with another externalId rule."
)
@click.option(
    "--upsert-customers",
    is_flag=True,
    help="Create each missing customer once, before its first event ([customer] email, full_name).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read, map and plan against the ledger; send nothing, write nothing to the ledger.",
)
@_selection_options
@click.option(
    "--retry-rejected",
    is_flag=True,
    help="Send again the rows Plain rejected (once the cause is fixed, e.g. customers created).",
)
@click.option(
    "--code",
    "retry_code",
    help="With --retry-rejected: only the rows rejected with this error code.",
)
@_FORMAT
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or progress lines.")
def run(
    sources: tuple[str, ...], mapping: str, quiet: bool, fmt: str | None, **options: Any
) -> None:
    """Send every row of SOURCES (or of --source-sql) to Plain as an event; resumes from
    the ledger.

    The API key comes from the PLAIN_API_KEY environment variable, never an argument.
    """
    try:
        settings = _settings(sources, mapping, fmt, options)
        with _ProgressDisplay(enabled=not quiet) as display:
            summary = pipeline.run(
                settings,
                progress=None if quiet else display.update,
                notice=display.notice,
                handle_signals=True,
            )
    except BackfillError as exc:
        _fail(exc)
    click.echo(render_summary(summary))
    sys.exit(summary.exit_code)


@cli.command("validate")
@click.argument("sources", nargs=-1)
@click.option("--mapping", "-m", required=True, help="The mapping file (TOML).")
@_sql_options
@click.option("--results-dir", help="Where invalid.csv goes [default: results].")
@click.option("--limit", type=int, help="Check only the first N rows.")
@click.option(
    "--upsert-customers", is_flag=True, help="Also check each row's customer can be upserted."
)
@_selection_options
@_FORMAT
def validate(sources: tuple[str, ...], mapping: str, fmt: str | None, **options: Any) -> None:
    """Map every row offline, exactly as run would; exit 1 if any row is invalid.

    No network and no ledger: the invalid rows go to invalid.csv with their reasons.
    """
    try:
        summary = pipeline.validate(_settings(sources, mapping, fmt, options))
    except BackfillError as exc:
        _fail(exc)
    click.echo(render_validation(summary))
    sys.exit(summary.exit_code)


@cli.command("preview")
@click.argument("sources", nargs=-1)
@click.option("--mapping", "-m", required=True, help="The mapping file (TOML).")
@_sql_options
@click.option(
    "-n",
    "count",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many rows from the start.",
)
@click.option(
    "--line", "lines", type=int, multiple=True, help="Show the row starting on this line."
)
@click.option("--upsert-customers", is_flag=True, help="Also show each customer upsert.")
@_FORMAT
def preview(
    sources: tuple[str, ...],
    mapping: str,
    count: int,
    lines: tuple[int, ...],
    fmt: str | None,
    **options: Any,
) -> None:
    """Print, as JSON, the exact GraphQL variables run would send for some rows."""
    try:
        settings = _settings(sources, mapping, fmt, options)
        shown = pipeline.preview(settings, n=count, lines=lines)
    except BackfillError as exc:
        _fail(exc)
    click.echo(json.dumps(shown, indent=2, ensure_ascii=False))


#: What `status` and `export` read: the ledger, and optionally the sources to check.
_job_options = _stacked(
    click.argument("sources", nargs=-1),
    click.option(
        "--mapping",
        "-m",
        help="The mapping file: with SOURCES, also count what is left to send and the "
        "delivered rows whose payload would change; without --ledger, its default ledger.",
    ),
    _sql_options,
    click.option(
        "--ledger",
        help="The job's ledger (a SQLite file or a PostgreSQL URL) [default: the mapping's;"
        " env BACKFILL_LEDGER].",
    ),
    click.option(
        "--rate",
        "eta_rate",
        help="The rate the ETA assumes, e.g. 450/min [default: the last run's].",
    ),
    _selection_options,
    _FORMAT,
)


def _ledger_settings(
    sources: tuple[str, ...], mapping: str | None, fmt: str | None, options: dict[str, Any]
) -> config.Settings:
    """Settings of `status` and `export`: a ledger, and maybe sources to check against it."""
    return config.resolve(
        sources=sources,
        mapping=mapping or "",
        sources_optional=True,
        format=_given(fmt),
        **{k: _given(v) for k, v in options.items()},
    )


@cli.command("status")
@_job_options
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(
    sources: tuple[str, ...],
    mapping: str | None,
    eta_rate: str | None,
    as_json: bool,
    fmt: str | None,
    **options: Any,
) -> None:
    """Counts per status, top error codes, recent runs, what is left and an ETA.

    Reads the ledger only. With SOURCES (or --source-sql) and --mapping, also maps every
    row again to count what is left to send and which delivered rows would now change.
    """
    from backfill.reports import render_status

    try:
        settings = _ledger_settings(sources, mapping, fmt, options)
        result = pipeline.status(settings, rate=config.given_rate(eta_rate))
    except BackfillError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(render_status(result))


@cli.command("export")
@_job_options
@click.option(
    "--out",
    "-o",
    default="export",
    show_default=True,
    help="The folder to write results.csv and failed.csv into (and left.csv, changed.csv).",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    help="Only rows with this status (repeatable), e.g. --status rejected.",
)
def export(
    sources: tuple[str, ...],
    mapping: str | None,
    eta_rate: str | None,
    out: str,
    statuses: tuple[str, ...],
    fmt: str | None,
    **options: Any,
) -> None:
    """Write the job's result CSVs from its ledger: every run and shard, merged.

    With SOURCES (or --source-sql) and --mapping, also left.csv (rows a run would send
    now) and changed.csv (delivered rows whose current mapping would send another payload).
    """
    try:
        settings = _ledger_settings(sources, mapping, fmt, options)
        result = pipeline.export(settings, out, statuses=statuses, rate=config.given_rate(eta_rate))
    except BackfillError as exc:
        _fail(exc)
    counts = ", ".join(f"{n} {name}" for name, n in sorted(result.by_status.items()))
    click.echo(f"wrote {result.rows} rows ({counts or 'none'}) to {result.folder}")
    for path in result.files:
        click.echo(f"  {path}")
    status = result.status
    if status is not None and status.pending is not None:
        eta = status.eta_s
        when = f" (ETA {eta:.0f}s at {status.rate_per_s:.2f} events/s)" if eta is not None else ""
        click.echo(
            f"left to send: {status.pending.to_send}{when}; "
            f"changed payloads: {status.pending.changed}"
        )


@cli.command("init")
@click.argument("source")
@click.option("--output", "-o", default="mapping.toml", show_default=True, help="File to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(source: str, output: str, force: bool) -> None:
    """Write a starter mapping from SOURCE's header and first rows."""
    try:
        pipeline.init(source, output, force=force)
    except BackfillError as exc:
        _fail(exc)
    click.echo(f"wrote {output}: check the lines marked '# check:', then run")
    click.echo(f"  backfill validate {source} --mapping {output}")


@cli.command("fake-plain")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--rate-limit", default=450, show_default=True, type=int, help="Requests per window.")
@click.option(
    "--window", default=60.0, show_default=True, type=float, help="Window length in seconds."
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    default=("test-key",),
    show_default=True,
    help="An accepted key (repeatable): KEY for every permission, or KEY=PERM,PERM.",
)
@click.option(
    "--max-mutations",
    type=click.IntRange(min=1),
    help="Refuse (400) documents with more top-level mutations than this.",
)
@click.option(
    "--count-mutations",
    is_flag=True,
    help="Charge each mutation in a request against the rate limit, not each request.",
)
@click.option("--retry-after", type=float, help="Send Retry-After (seconds) with every 429.")
def fake_plain(
    host: str,
    port: int,
    rate_limit: int,
    window: float,
    api_keys: tuple[str, ...],
    max_mutations: int | None,
    count_mutations: bool,
    retry_after: float | None,
) -> None:
    """Serve a local Plain-compatible API for rehearsals and tests."""
    from backfill import fakeplain

    fakeplain.serve(
        host=host,
        port=port,
        rate_limit=rate_limit,
        window_s=window,
        max_mutations=max_mutations,
        count_mutations=count_mutations,
        retry_after_s=retry_after,
        api_keys=dict(fakeplain.parse_api_key(text) for text in api_keys),
    )


def _fail(exc: BackfillError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


class _ProgressDisplay:
    """A tqdm bar on a terminal; a plain line every 10 s otherwise (Airflow logs)."""

    LOG_EVERY_S = 10.0

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self._last_line = 0.0

    def __enter__(self) -> _ProgressDisplay:
        if self.enabled and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(unit=" rows", file=sys.stderr, dynamic_ncols=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def notice(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)

    def update(self, p: Progress) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.total = p.estimated_rows
            self.bar.n = p.settled
            self.bar.set_postfix(
                delivered=p.delivered,
                failed=p.failed,
                skipped=p.skipped,
                ev_s=f"{p.events_per_s:.1f}",
                refresh=False,
            )
            self.bar.refresh()
            return
        now = time.monotonic()
        if now - self._last_line >= self.LOG_EVERY_S:
            self._last_line = now
            click.echo(
                f"progress: {p.settled} rows settled of {p.rows_read} read, "
                f"{p.delivered} delivered, "
                f"{p.failed} failed, {p.skipped} skipped, {p.events_per_s:.1f} events/s"
                + (f", about {p.eta_s:.0f}s left" if p.eta_s is not None else ""),
                err=True,
            )


def main() -> None:
    # Not click's standalone mode: it turns Ctrl-C into "Aborted!" and exit 1, and the
    # exit code table says 130. A run handles its own signals; this covers the rest
    # (starting up, reading headers, printing the summary).
    try:
        code = cli.main(prog_name="backfill", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
