"""What a ledger says of a job: `backfill status`, and what is left to send.

Read-only: the ledger is opened as it is and nothing is written. Given the sources and
the mapping as well, the rows are mapped again and looked up, as a dry run would, to
tell what is left to send and which delivered rows the current mapping would send
differently (their payload hash changed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final

from backfill.config import (
    AUTO_START_RATE,
    LedgerTarget,
    Rate,
    Settings,
    recorded_rate,
    recorded_shard,
)
from backfill.ledger import open_ledger, queries
from backfill.models import CodeCount, Event, JobStatus, Ledger, Pending, RunLine, Status
from backfill.planner import Decision, Planned, Rules, known_from, planned

#: Error codes listed, most frequent first.
TOP_CODES: Final = 10
#: Statuses a plain re-run sends again.
UNSETTLED: Final = (Status.RETRYABLE, Status.IN_FLIGHT)


#: What `check_sources` tells its `report` callback of a row: sent now, or changed.
Report = Callable[[str, Planned, "Event | None"], None]


def job_status(
    ledger: LedgerTarget | str,
    *,
    settings: Settings | None = None,
    rate: Rate | None = None,
    runs: int = 5,
    report: Report | None = None,
) -> JobStatus:
    """Summarise a ledger. With `settings` (sources and mapping), check them against it.

    `rate` is what the ETA assumes; by default the last run's `--rate`, or its measured
    pace when it learnt the rate (`auto`).
    """
    with read_ledger(ledger) as book:
        counts = issue_aware_counts(book)
        lines = run_lines(book, runs)
        rate_per_s, rate_from = _eta_rate(book, rate, lines)
        pending = check_sources(book, settings, report=report) if settings is not None else None
        return JobStatus(
            ledger=book.path,
            counts=counts,
            codes=top_codes(book),
            runs=lines,
            unsettled=sum(counts.get(str(s), 0) for s in UNSETTLED),
            rate_per_s=rate_per_s,
            rate_from=rate_from,
            pending=pending,
        )


class read_ledger:  # noqa: N801 - used as a function
    """A ledger opened read-only, closed on exit; a missing one is an error, not empty."""

    def __init__(self, target: LedgerTarget | str) -> None:
        self.target = target
        self.ledger: Ledger | None = None

    def __enter__(self) -> Ledger:
        self.ledger = open_ledger(self.target, readonly=True, must_exist=True)
        return self.ledger

    def __exit__(self, *exc: object) -> None:
        if self.ledger is not None:
            self.ledger.close()


def issue_aware_counts(ledger: Ledger) -> dict[str, int]:
    """Rows per status: the events, and the rows that never became one (invalid,
    duplicate_in_source) as the latest run that read them found them."""
    return queries.row_counts(ledger)


def superseded(ledger: Ledger) -> dict[str, str]:
    """Events not delivered whose row a later run found invalid, with their status: the
    row's word now is `invalid` (see `backfill.ledger.queries.SUPERSEDED`)."""
    return queries.superseded(ledger)


def top_codes(ledger: Ledger, limit: int = TOP_CODES) -> list[CodeCount]:
    """The commonest error codes among rows not delivered, with a sample message each."""
    codes = [CodeCount(*row) for row in queries.error_codes(ledger)]
    return sorted(codes, key=lambda c: (-c.rows, c.code))[:limit]


def run_lines(ledger: Ledger, limit: int) -> list[RunLine]:
    """The last `limit` runs, newest first, with what each delivered and how fast."""
    now = time.time()
    lines = []
    for run in queries.recent_runs(ledger, limit):
        until = run.ended_at or (run.heartbeat_at if run.state != "running" else now) or now
        elapsed = max(float(until) - float(run.started_at), 1e-3)
        speed = round(run.delivered / elapsed, 2)
        recorded = recorded_shard(run.options)
        shard = str(recorded) if recorded is not None else ""
        lines.append(
            RunLine(
                run.run_id,
                run.state,
                run.started_at,
                run.ended_at,
                run.exit_code,
                run.delivered,
                speed,
                shard,
            )
        )
    return lines


def _eta_rate(ledger: Ledger, rate: Rate | None, lines: Sequence[RunLine]) -> tuple[float, str]:
    """Events per second the ETA assumes, and where that figure comes from.

    A given rate (the whole workspace's, shards included); else the last run's `--rate`;
    under `auto`, the pace the last runs measured, summed over shards that ran together.
    """
    if rate is not None and not rate.auto:
        return rate.per_s, f"--rate {rate}"
    last = recorded_rate(queries.last_run_options(ledger))
    if rate is None and last is not None and not last.auto:
        return last.per_s, f"the last run's --rate {last}"
    measured = _measured_pace(lines)
    if measured:
        return measured, "the pace the last runs measured (shards running together summed)"
    return Rate.parse(AUTO_START_RATE).per_s, f"{AUTO_START_RATE} (no run to measure yet)"


def _measured_pace(lines: Sequence[RunLine]) -> float:
    """The newest run that delivered, and every run that overlapped it in time."""
    newest = next((line for line in lines if line.delivered), None)
    if newest is None:
        return 0.0
    end = newest.ended_at or time.time()
    return sum(
        line.events_per_s
        for line in lines
        if line.delivered and line.started_at < end and (line.ended_at or end) > newest.started_at
    )


#: How many changed externalIds `Pending` keeps for display.
CHANGED_KEPT: Final = 20


def check_sources(ledger: Ledger, settings: Settings, *, report: Report | None = None) -> Pending:
    """Map the sources again and look each row up: what a run would do now.

    `report` (used by `export`) hears of each row a run would send (`"send"`, with its
    event) and of each delivered row whose payload would change (`"changed"`, with its
    new event, or None when the row no longer maps).
    """
    from backfill.intake import prepare
    from backfill.ledger import SqliteLedger

    prepared = prepare(settings)
    rules = Rules.of(settings, prepared.mapper, prepared.selection)
    rows = to_send = new = invalid = duplicates = changed = 0
    changed_ids: list[str] = []
    with SqliteLedger.scratch() as scratch:
        chunks = prepared.chunks(limit=settings.limit)
        for items in planned(chunks, rules, known_from(scratch, ledger)):
            rows += len(items)
            for item in items:
                if item.decision == Decision.DUPLICATE:
                    duplicates += 1
                elif item.decision == Decision.INVALID:
                    invalid += 1
                elif item.decision == Decision.SEND:
                    to_send += 1
                    new += item.entry is None
                    if report is not None:
                        report("send", item, item.event)
                elif item.changed:
                    changed += 1
                    if len(changed_ids) < CHANGED_KEPT:
                        changed_ids.append(item.external_id)
                    if report is not None:
                        report("changed", item, item.event)
    return Pending(rows, to_send, new, invalid, duplicates, changed, tuple(changed_ids))
