"""The library API: `run()` / `arun()` wire reader, planner, mapper, sender, ledger and reports.

This is the only module that joins the edges together; the CLI, Airflow and
notebooks call these functions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

from backfill import plain
from backfill.config import Rate, Settings
from backfill.errors import (
    ConfigError,
)
from backfill.intake import check_upsert, prepare
from backfill.job import execute, new_run_id
from backfill.ledger import SqliteLedger
from backfill.mapper import Mapper, event_id, map_row
from backfill.models import (
    Invalid,
    NoticeCallback,
    ProgressCallback,
    RowProblem,
    SourceRow,
    Status,
)
from backfill.planner import (
    Decision,
    Rules,
    known_from,
    planned,
)
from backfill.reports import ResultsWriter, RunSummary, ValidateSummary, issue_row
from backfill.urls import display_name

if TYPE_CHECKING:
    from backfill.job_export import ExportSummary
    from backfill.models import JobStatus

log = logging.getLogger(__name__)


def run(
    settings: Settings,
    *,
    progress: ProgressCallback | None = None,
    notice: NoticeCallback | None = None,
    handle_signals: bool = False,
) -> RunSummary:
    """Run the backfill to the end and return its summary.

    >>> from backfill import resolve, run
    >>> summary = run(resolve(sources=("data/sample_activity.csv",),
    ...                       mapping="data/mapping.toml"))  # doctest: +SKIP
    >>> summary.exit_code  # doctest: +SKIP
    0
    """
    return asyncio.run(
        arun(settings, progress=progress, notice=notice, handle_signals=handle_signals)
    )


async def arun(
    settings: Settings,
    *,
    progress: ProgressCallback | None = None,
    notice: NoticeCallback | None = None,
    handle_signals: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RunSummary:
    """The async twin of `run` (for notebooks, which already run an event loop)."""
    return await execute(
        settings,
        progress=progress,
        notice=notice,
        handle_signals=handle_signals,
        transport=transport,
    )


# --- offline: validate and preview -------------------------------------------------------

#: How many example reasons `validate` keeps per kind of problem.
EXAMPLES_PER_CODE: Final = 3


def validate(
    settings: Settings, *, progress: Callable[[int], None] | None = None
) -> ValidateSummary:
    """Map every row offline, exactly as `run` would; write the invalid ones to invalid.csv.

    No network, no ledger: duplicates are found through a scratch database. The
    settings' shard and window check only the rows a run with those options takes.

    >>> settings = resolve(sources=("data/sample_activity.csv",), mapping="data/mapping.toml")
    >>> validate(settings).invalid  # doctest: +SKIP
    0
    """
    prepared = prepare(settings)
    if settings.upsert_customers:
        check_upsert(prepared.spec)
    # No ledger: every valid row counts as sendable, and no payload hash is needed.
    rules = replace(Rules.of(settings, prepared.mapper, prepared.selection), hashed=False)
    check_id = "validate-" + new_run_id()
    folder = Path(settings.results_dir) / check_id
    results = ResultsWriter(folder)
    by_code: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    rows = valid = invalid = duplicates = 0
    # A scratch database (a temporary file, not the ledger) holds the ids seen so far.
    with SqliteLedger.scratch() as scratch:
        for items in planned(
            prepared.chunks(limit=settings.limit), rules, known_from(scratch, None)
        ):
            rows += len(items)
            for item in items:
                if item.decision == Decision.DUPLICATE:
                    duplicates += 1
                    continue
                if item.decision == Decision.SEND:
                    valid += 1
                    continue
                invalid += 1
                issue = item.invalid
                problem = issue.problem
                by_code[problem.code] = by_code.get(problem.code, 0) + 1
                seen = examples.setdefault(problem.code, [])
                if len(seen) < EXAMPLES_PER_CODE:
                    where = f"{issue.source}:{issue.position}"
                    column = f" [{problem.column}]" if problem.column else ""
                    seen.append(f"{where}{column} {problem.message}")
                results.write(issue_row(check_id, issue, Status.INVALID))
            if progress is not None:
                progress(rows)
    results.close()
    invalid_csv = folder / "invalid.csv"
    (folder / "failed.csv").replace(invalid_csv)
    (folder / "results.csv").unlink()
    return ValidateSummary(rows, valid, invalid, duplicates, by_code, examples, str(invalid_csv))


def preview(settings: Settings, *, n: int = 5, lines: Sequence[int] = ()) -> list[dict[str, Any]]:
    """The exact GraphQL variables `run` would send for the first `n` rows, or given lines.

    A line is the first line of a record, in every source given. A line where no record
    starts is shown as missing. Offline: no network, no ledger. With `sql` the rows come
    from that query (lines do not apply: narrow the query instead).
    """
    if n < 1:
        raise ConfigError("-n must be at least 1")
    if settings.sql is not None and lines:
        raise ConfigError("--line picks lines of files; with --source-sql, narrow the query")
    upsert_customers = settings.upsert_customers
    prepared = prepare(settings)
    mapper, files = prepared.mapper, prepared.files
    wanted = {str(line) for line in lines}
    found: set[tuple[str, str]] = set()
    shown: list[dict[str, Any]] = []
    for chunk in prepared.chunks():
        for row in chunk:
            if wanted and row.position not in wanted:
                continue
            found.add((row.source, row.position))
            shown.append(_preview_row(mapper, row, upsert_customers=upsert_customers))
            if not wanted and len(shown) >= n:
                return shown
            if wanted and len(found) == len(wanted) * len(files):
                return shown
    for source in files:
        for line in sorted(wanted - {p for s, p in found if s == display_name(source)}, key=int):
            shown.append(
                {
                    "source": display_name(source),
                    "line": line,
                    "missing": "no record starts on this line",
                }
            )
    return shown


def _preview_row(mapper: Mapper, row: SourceRow, *, upsert_customers: bool) -> dict[str, Any]:
    where: dict[str, Any] = {"source": row.source, "line": row.position}
    ident = _id_or_problem(mapper, row)
    mapped = (
        map_row(mapper, row, ident)
        if isinstance(ident, str)
        else Invalid(row.source, row.position, ident)
    )
    if isinstance(mapped, Invalid):
        problem = mapped.problem
        return where | {
            "invalid": {"code": problem.code, "column": problem.column, "message": problem.message}
        }
    shown = where | {
        "external_id": mapped.external_id,
        "operation": plain.MUTATIONS[mapped.kind][1],
        "variables": {"input": mapped.input},
    }
    if mapped.note:
        shown["note"] = mapped.note
    if upsert_customers and mapped.customer:
        shown["upsertCustomer"] = (
            {"variables": {"input": mapped.upsert}}
            if mapped.upsert is not None
            else {"impossible": mapped.upsert_problem}
        )
    return shown


def init(source: str, output: str, *, force: bool = False) -> str:
    """Write a starter mapping for `source` (guessed from its header and first rows) to
    `output`, keeping an existing file unless `force`; returns the text written.

    >>> init("data/sample_activity.csv", "mapping.toml")  # doctest: +SKIP
    """
    from backfill.starter import write_starter

    return write_starter(source, output, force=force)


# --- the ledger: status and export -------------------------------------------------------


def status(settings: Settings, *, rate: Rate | None = None, runs: int = 5) -> JobStatus:
    """What the job's ledger says: counts per status, top error codes, recent runs, what is
    left and an ETA at `rate` (else the last run's). With sources in `settings`, every row
    is mapped again and looked up, as a dry run would, to count what is left to send and
    which delivered rows would now send another payload. Reads the ledger only.

    >>> status(resolve(ledger=".backfill/mapping.sqlite")).counts  # doctest: +SKIP
    {'delivered': 2592}
    """
    from backfill.job_status import job_status

    return job_status(
        settings.ledger,
        settings=settings if _with_sources(settings) else None,
        rate=rate,
        runs=runs,
    )


def export(
    settings: Settings,
    out: str,
    *,
    statuses: Sequence[str] = (),
    rate: Rate | None = None,
) -> ExportSummary:
    """Write the job's `results.csv` and `failed.csv` from its ledger into `out`: every run
    and shard merged, one row per source row. With sources in `settings`, also `left.csv`
    (rows a run would send now) and `changed.csv` (delivered rows whose payload would
    change)."""
    from backfill.job_export import export_results

    return export_results(
        settings.ledger,
        out,
        statuses=statuses,
        settings=settings if _with_sources(settings) else None,
        rate=rate,
    )


def _with_sources(settings: Settings) -> bool:
    return bool(settings.sources) or settings.sql is not None


def _id_or_problem(mapper: Mapper, row: SourceRow) -> str | RowProblem:
    return event_id(mapper, row) if row.problem is None else row.problem
