"""`backfill export`: result CSVs of a whole job, from its ledger.

The ledger holds every run's rows, shards' included, so one export merges them:
`results.csv` (one row per source row, as the ledger knows it now) and `failed.csv`
(its invalid, rejected and retryable rows), in the column set of a run's own result
files (`RESULT_COLUMNS`), free text made inert in spreadsheets. Given the sources and
the mapping as well, `left.csv` lists the rows a run would send now and `changed.csv`
the delivered rows whose current mapping would send another payload.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from backfill.config import LedgerTarget, Rate, Settings
from backfill.errors import ConfigError
from backfill.job_status import job_status, read_ledger
from backfill.ledger import queries
from backfill.models import FAILED, RESULT_COLUMNS, Event, JobStatus, Ledger, ResultRow, Status
from backfill.planner import Planned
from backfill.reports import iso, result_cells

#: Events read from the ledger per query (keyset pages: memory stays flat).
PAGE: Final = 5_000
STATUSES: Final = tuple(str(status) for status in Status)
_NOTES: Final = {
    "in_flight": "sent, Plain's answer not recorded; sent again next run",
    "retryable": "not delivered yet; sent again next run",
}


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What `export` wrote, and (with sources) what is left."""

    folder: str
    rows: int
    failed: int
    by_status: dict[str, int]
    files: tuple[str, ...]
    status: JobStatus | None = None


def export_results(
    ledger: LedgerTarget | str,
    folder: str,
    *,
    statuses: Sequence[str] = (),
    settings: Settings | None = None,
    rate: Rate | None = None,
) -> ExportSummary:
    """Write the job's result CSVs into `folder` (all rows, or those with `statuses`).

    >>> export_results(".backfill/mapping.sqlite", "export").rows  # doctest: +SKIP
    2400
    """
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        raise ConfigError(
            f"--status {', '.join(unknown)}: a status is one of {', '.join(STATUSES)}"
        )
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write to {out}: {exc.strerror}") from None
    wanted = frozenset(statuses) or frozenset(STATUSES)
    by_status: Counter[str] = Counter()
    files = [out / "results.csv", out / "failed.csv"]
    with read_ledger(ledger) as book, _Csv(files[0]) as results, _Csv(files[1]) as failed:
        for row in _rows(book, wanted):
            by_status[row.status] += 1
            results.write(row)
            if row.status in FAILED:
                failed.write(row)
    status = None
    if settings is not None:
        files += [out / "left.csv", out / "changed.csv"]
        with _Csv(files[2]) as left, _Csv(files[3]) as changed:

            def report(kind: str, item: Planned, event: Event | None) -> None:
                (left if kind == "send" else changed).write(_pending_row(kind, item, event))

            status = job_status(ledger, settings=settings, rate=rate, report=report)
    return ExportSummary(
        folder=str(out),
        rows=sum(by_status.values()),
        failed=sum(n for s, n in by_status.items() if s in FAILED),
        by_status=dict(by_status),
        files=tuple(str(f) for f in files),
        status=status,
    )


class _Csv:
    """One result CSV, written row by row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None
        self._writer: Any = None

    def __enter__(self) -> _Csv:
        try:
            self._fh = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror}") from None
        self._writer = csv.writer(self._fh)
        self._writer.writerow(RESULT_COLUMNS)
        return self

    def write(self, row: ResultRow) -> None:
        self._writer.writerow(result_cells(row))

    def __exit__(self, *exc: object) -> None:
        assert self._fh is not None
        self._fh.close()


def _rows(ledger: Ledger, wanted: frozenset[str]) -> Iterator[ResultRow]:
    """Every event in externalId order, then every row that never became one."""
    if wanted & {str(s) for s in Status if s not in (Status.INVALID, Status.DUPLICATE_IN_SOURCE)}:
        yield from _events(ledger, wanted, frozenset(queries.superseded(ledger)))
    if wanted & {"invalid", "duplicate_in_source"}:
        yield from _issues(ledger, wanted)


def _events(
    ledger: Ledger, wanted: frozenset[str], left_out: frozenset[str]
) -> Iterator[ResultRow]:
    """Pages in externalId order along the primary key; a status filter is applied here,
    not in SQL, where it would make the database sort what is left on every page.
    `left_out`: events whose row a later run found invalid (its issue row stands for it)."""
    after = ""
    while True:
        page = queries.events_page(ledger, after, PAGE)
        for ext_id, run_id, status, event_id, source, position, code, message, *rest in page:
            if status not in wanted or ext_id in left_out:
                continue
            timestamp, attempts, sent_at, answered_at, latency = rest
            yield ResultRow(
                run_id=str(run_id),
                external_id=str(ext_id),
                status=str(status),
                plain_event_id=event_id or "",
                source=str(source),
                position=str(position),
                code=code or "",
                message=message or "",
                note=_NOTES.get(str(status), ""),
                event_timestamp=timestamp or "",
                attempts=int(attempts),
                # Times of the latest request; empty for rows never sent.
                sent_at=iso(sent_at or 0),
                answered_at=iso(answered_at or 0),
                latency_ms=latency if latency is not None else "",
            )
        if len(page) < PAGE:
            return
        after = str(page[-1][0])


def _issues(ledger: Ledger, wanted: frozenset[str]) -> Iterator[ResultRow]:
    """Rows that never became an event, in pages of places (memory stays flat)."""
    after = ("", "")
    while True:
        page = queries.issues_page(ledger, after, PAGE)
        places = set()
        for run_id, ext_id, status, source, position, column, code, message, gone in page:
            place = (str(source), str(position))
            if place in places:  # two issues of one place recorded at the same instant
                continue
            places.add(place)
            after = place  # the database's order, whatever its collation
            if gone or status not in wanted:
                continue
            yield ResultRow(
                run_id=str(run_id),
                external_id=ext_id or "",
                status=str(status),
                source=place[0],
                position=place[1],
                column=column or "",
                code=code or "",
                message=message or "",
            )
        if len(places) < PAGE:
            return


def _pending_row(kind: str, item: Planned, event: Event | None) -> ResultRow:
    entry = item.entry
    if kind == "send":
        note = "left to send" if entry is None else f"left to send again ({entry.status})"
    elif event is None:
        note = "delivered; the current mapping no longer maps this row"
    else:
        note = "delivered; the current mapping would send another payload (not sent again)"
    return ResultRow(
        run_id=entry.run_id if entry is not None else "",
        external_id=item.external_id,
        status=str(entry.status) if entry is not None else "new",
        plain_event_id=entry.plain_event_id if entry is not None else "",
        source=item.row.source,
        position=item.row.position,
        code=entry.code if entry is not None else "",
        message=entry.message if entry is not None else "",
        note=note,
        event_timestamp=event.timestamp if event is not None else "",
        attempts=entry.attempts if entry is not None else 0,
    )
