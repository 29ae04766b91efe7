"""Result files of a run: results.csv, failed.csv and summary.json.

One column set everywhere (`RESULT_COLUMNS`). Free-text cells that a spreadsheet
would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage
return) get a leading apostrophe in the `source`, `column`, `message` and `note`
columns; ids, timestamps and numbers are never altered.
"""

from __future__ import annotations

import csv
import json
import operator
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from backfill.errors import ConfigError
from backfill.models import FAILED, RESULT_COLUMNS, Event, Invalid, ResultRow, Status
from backfill.planner import Planned

if TYPE_CHECKING:
    from backfill.models import JobStatus

FREE_TEXT_COLUMNS: Final = frozenset({"source", "column", "message", "note"})
#: would_send.csv (dry runs): what a real run would send, and what the ledger holds now.
WOULD_SEND_COLUMNS: Final = (
    "external_id",
    "kind",
    "ledger_status",
    "source",
    "position",
    "event_timestamp",
    "note",
    "upsert_first",
    "variables",
)
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """Make a free-text cell inert in spreadsheets.

    >>> neutralise("=HYPERLINK(1)")
    "'=HYPERLINK(1)"
    """
    return "'" + text if text.startswith(_FORMULA_START) else text


def iso(epoch: float) -> str:
    """An epoch time as ISO 8601 UTC with milliseconds, or empty for 0."""
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ResultsWriter:
    """Streams results.csv and failed.csv into a run's folder as rows are settled."""

    def __init__(self, folder: Path, *, dry_run: bool = False) -> None:
        self.folder = folder
        self._would_send: tuple[IO[str], Any] | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._results, self._results_csv = self._open("results.csv")
            self._failed, self._failed_csv = self._open("failed.csv")
            if dry_run:
                self._would_send = self._open("would_send.csv", WOULD_SEND_COLUMNS)
        except OSError as exc:
            raise ConfigError(
                f"cannot write results to {folder}: {exc.strerror}; choose --results-dir"
            ) from None

    def _open(self, name: str, columns: tuple[str, ...] = RESULT_COLUMNS) -> tuple[IO[str], Any]:
        fh = open(self.folder / name, "w", encoding="utf-8", newline="")  # noqa: SIM115
        writer = csv.writer(fh)
        writer.writerow(columns)
        return fh, writer

    def write_would_send(self, event: Event, *, ledger_status: str, upsert_first: str = "") -> None:
        """A dry run's row that a real run would send, with the exact variables."""
        assert self._would_send is not None, "not a dry run"
        self._would_send[1].writerow(
            [
                event.external_id,
                str(event.kind),
                ledger_status,
                neutralise(event.source),
                event.position,
                event.timestamp,
                neutralise(event.note),
                neutralise(upsert_first),
                json.dumps({"input": event.input}, ensure_ascii=False, sort_keys=True),
            ]
        )

    def write(self, row: ResultRow) -> None:
        cells = result_cells(row)
        self._results_csv.writerow(cells)
        if row.status in FAILED:
            self._failed_csv.writerow(cells)

    def write_settled(self, run_id: str, items: Sequence[Planned]) -> None:
        """Rows an earlier run settled, as the ledger holds them (one call per chunk)."""
        failed = []
        rows = []
        notes: dict[str, str] = {}
        sources: dict[str, str] = {}
        for item in items:
            entry = item.entry
            assert entry is not None
            note = notes.get(entry.run_id)
            if note is None:
                note = notes[entry.run_id] = f"settled by run {entry.run_id}; not sent again"
            source = sources.get(item.row.source)
            if source is None:
                source = sources[item.row.source] = neutralise(item.row.source)
            message = entry.message
            cells = [
                run_id,
                item.external_id,
                entry.status,
                entry.plain_event_id,
                source,
                item.row.position,
                "",
                entry.code,
                neutralise(message) if message else "",
                note,
                entry.event_timestamp,
                entry.attempts,
                "",
                "",
                "",
            ]
            rows.append(cells)
            if entry.status in FAILED:
                failed.append(cells)
        self._results_csv.writerows(rows)
        if failed:
            self._failed_csv.writerows(failed)

    def flush(self) -> None:
        self._results.flush()
        self._failed.flush()

    def close(self) -> None:
        self._results.close()
        self._failed.close()
        if self._would_send is not None:
            self._would_send[0].close()


#: A result row's cells in column order (one C-level call per row).
_GETTER: Final = operator.attrgetter(*RESULT_COLUMNS)
_FREE_TEXT_INDEXES: Final = tuple(
    n for n, name in enumerate(RESULT_COLUMNS) if name in FREE_TEXT_COLUMNS
)


def result_cells(row: ResultRow) -> list[Any]:
    """A result row's cells, its free text made inert in spreadsheets."""
    cells = list(_GETTER(row))
    for n in _FREE_TEXT_INDEXES:
        text = str(cells[n])
        if text.startswith(_FORMULA_START):
            cells[n] = "'" + text
    return cells


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run did, for the screen, summary.json and callers of the library."""

    run_id: str
    exit_code: int
    state: str
    counts: Mapping[str, int]
    rows_read: int
    requests: int
    rate_limited: int
    skipped_done: int
    changed_payloads: int
    elapsed_s: float
    events_per_s: float
    results_dir: str
    ledger: str
    workspace_id: str = ""
    workspace_name: str = ""
    message: str = ""
    unknown_customers: int = 0
    customers_upserted: int = 0
    dry_run: bool = False
    #: Events per request asked for, and what the run ended on (lower after a fallback).
    events_per_request: int = 1
    events_per_request_used: int = 1
    #: Why events per request was lowered, in order.
    fallbacks: tuple[str, ...] = ()
    #: Times Plain stopped answering and the run paused (and how long, in all).
    outages: int = 0
    rate: str = ""
    #: With `--rate auto`: the budget learnt from Plain's headers, e.g. "450 per 60s window".
    learnt_budget: str = ""
    #: The part of the job this run took: "shard 1/4, since ..., until ..." (empty: all).
    selection: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ValidateSummary:
    """What `validate` found: counts, reasons grouped by code, and where invalid.csv is."""

    rows_read: int
    valid: int
    invalid: int
    duplicates: int
    by_code: Mapping[str, int]
    examples: Mapping[str, list[str]]
    invalid_csv: str

    @property
    def exit_code(self) -> int:
        return 1 if self.invalid else 0


def write_summary(summary: RunSummary, folder: Path) -> None:
    (folder / "summary.json").write_text(
        json.dumps(summary.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def render_summary(summary: RunSummary) -> str:
    """The one-screen summary printed at the end of a run."""
    lines = [f"run {summary.run_id}: {summary.state} (exit {summary.exit_code})"]
    if summary.message:
        lines.append(f"  {summary.message}")
    if summary.workspace_name or summary.workspace_id:
        lines.append(f"  workspace          {summary.workspace_name} ({summary.workspace_id})")
    if summary.selection:
        lines.append(f"  rows taken         {summary.selection}")
    lines.append(f"  rows read          {summary.rows_read}")
    for status, n in sorted(summary.counts.items()):
        lines.append(f"  {status:<18} {n}")
    if summary.skipped_done:
        lines.append(f"  (of which {summary.skipped_done} delivered earlier: skipped, no request)")
    if summary.changed_payloads:
        lines.append(
            f"  {summary.changed_payloads} delivered rows would now send a different payload "
            "(the mapping changed; they are not sent again)"
        )
    if summary.unknown_customers:
        lines.append(
            f"  {summary.unknown_customers} distinct customers are unknown to Plain (their events "
            "are rejected with not_found; --upsert-customers creates them)"
        )
    if summary.customers_upserted:
        what = "customers to upsert" if summary.dry_run else "customers upserted"
        lines.append(f"  {what:<18} {summary.customers_upserted}")
    lines.append(f"  requests           {summary.requests} ({summary.rate_limited} rate-limited)")
    if summary.learnt_budget:
        lines.append(f"  rate auto          learnt {summary.learnt_budget}")
    if summary.events_per_request > 1:
        used = summary.events_per_request_used
        lines.append(
            f"  events/request     {summary.events_per_request}"
            + (f", lowered to {used}" if used != summary.events_per_request else "")
        )
        lines += [f"    {reason}" for reason in summary.fallbacks]
    if summary.outages:
        lines.append(
            f"  outages            {summary.outages} (sending paused until Plain answered)"
        )
    lines.append(
        f"  elapsed            {summary.elapsed_s:.1f}s, {summary.events_per_s:.1f} events/s"
    )
    lines.append(f"  results            {summary.results_dir}")
    lines.append(f"  ledger             {summary.ledger}")
    return "\n".join(lines)


def render_validation(summary: ValidateSummary) -> str:
    """The summary `backfill validate` prints: counts, then reasons grouped by kind."""
    lines = [
        f"rows read          {summary.rows_read}",
        f"valid              {summary.valid}",
        f"invalid            {summary.invalid}",
    ]
    if summary.duplicates:
        lines.append(
            f"repeated ids       {summary.duplicates} (rows with the externalId of an earlier "
            "row: a run reports them as duplicate_in_source)"
        )
    for code, count in sorted(summary.by_code.items(), key=lambda item: -item[1]):
        lines.append(f"  {code}: {count}")
        lines += [f"    {example}" for example in summary.examples.get(code, [])]
    if summary.invalid:
        lines.append(f"invalid rows       {summary.invalid_csv}")
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render_status(status: JobStatus) -> str:
    """`backfill status` on one screen."""
    lines = [f"ledger {status.ledger}"]
    total = sum(status.counts.values())
    lines.append(f"  rows               {total}")
    for name, n in status.counts.items():
        lines.append(f"  {name:<18} {n}")
    if status.codes:
        lines.append("errors (rows not delivered, by code)")
        for code in status.codes:
            sample = code.sample if len(code.sample) <= 100 else code.sample[:97] + "..."
            lines.append(f"  {code.code:<22} {code.rows:>7} {code.status:<10} e.g. {sample}")
    if status.runs:
        lines.append("runs (newest first)")
        for run in status.runs:
            shard = f" shard {run.shard}" if run.shard else ""
            exit_code = "-" if run.exit_code is None else run.exit_code
            lines.append(
                f"  {run.run_id}{shard}  {run.state} (exit {exit_code}),"
                f" {run.delivered} delivered, {run.events_per_s:.1f} events/s"
            )
    pending = status.pending
    if pending is not None:
        lines.append(f"sources checked against the ledger ({pending.rows} rows)")
        lines.append(
            f"  left to send       {pending.to_send} ({pending.new} never sent, "
            f"{pending.to_send - pending.new} to send again)"
        )
        lines.append(f"  invalid now        {pending.invalid}")
        if pending.duplicates:
            lines.append(f"  duplicate_in_source {pending.duplicates}")
        lines.append(
            f"  changed payloads   {pending.changed} delivered rows whose current mapping would "
            "send another payload (not sent again)"
        )
        for ext_id in pending.changed_ids:
            lines.append(f"    {ext_id}")
    else:
        lines.append(
            f"left to send         {status.unsettled} retryable or in_flight (give the sources "
            "and --mapping to count rows never sent)"
        )
    lines.append(
        f"  ETA                {_duration(status.eta_s)} at {status.rate_per_s:.2f} events/s "
        f"({status.rate_from})"
    )
    return "\n".join(lines)


def issue_row(run_id: str, issue: Invalid, status: Status) -> ResultRow:
    """The result line of a row that never became an event."""
    return ResultRow(
        run_id=run_id,
        external_id=issue.external_id,
        status=str(status),
        source=issue.source,
        position=issue.position,
        column=issue.problem.column,
        code=issue.problem.code,
        message=issue.problem.message,
    )
