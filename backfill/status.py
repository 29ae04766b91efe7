"""What a ledger says of a job: `backfill status`, and what is left to send.

Read-only: the ledger is opened as it is and nothing is written. Given the sources and
the mapping as well, the rows are mapped again and looked up, as a dry run would, to
tell what is left to send and which delivered rows the current mapping would send
differently (their payload hash changed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from backfill.config import AUTO_START_RATE, Settings
from backfill.errors import ConfigError
from backfill.ledger import open_ledger, queries
from backfill.mapper import event_ids, map_row
from backfill.models import Event, Ledger, Status
from backfill.planner import Decision, Planned, plan
from backfill.ratelimit import parse_rate

#: Error codes listed, most frequent first.
TOP_CODES: Final = 10
#: Statuses a plain re-run sends again.
UNSETTLED: Final = (Status.RETRYABLE, Status.IN_FLIGHT)


@dataclass(frozen=True, slots=True)
class CodeCount:
    """An error code, how many rows have it now, and one of their messages."""

    code: str
    status: str
    rows: int
    sample: str


@dataclass(frozen=True, slots=True)
class RunLine:
    """A run as `status` lists it."""

    run_id: str
    state: str
    started_at: float
    ended_at: float | None
    exit_code: int | None
    delivered: int
    #: Events this run delivered per second of its duration (until now, if still running).
    events_per_s: float
    shard: str = ""


@dataclass(frozen=True, slots=True)
class Pending:
    """The sources checked against the ledger: what a run would do now."""

    rows: int
    #: Rows a run would send: new ones, and retryable, in_flight or once-invalid ones.
    to_send: int
    new: int
    invalid: int
    duplicates: int
    #: Delivered rows whose current mapping would send another payload (not sent again).
    changed: int
    #: Their externalIds, up to `CHANGED_KEPT` of them (`export` writes them all).
    changed_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JobStatus:
    """`backfill status`: the ledger's counts, errors, runs, and what is left."""

    ledger: str
    counts: dict[str, int]
    codes: list[CodeCount]
    runs: list[RunLine]
    #: Rows a plain re-run sends again, as the ledger knows them (retryable, in_flight).
    unsettled: int
    #: What the ETA assumes: events per second.
    rate_per_s: float
    rate_from: str
    pending: Pending | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def left(self) -> int:
        """Rows left to send: from the sources when given, else as the ledger knows them."""
        return self.pending.to_send if self.pending is not None else self.unsettled

    @property
    def eta_s(self) -> float | None:
        return self.left / self.rate_per_s if self.rate_per_s > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "counts": self.counts,
            "codes": [vars_of(code) for code in self.codes],
            "runs": [vars_of(run) for run in self.runs],
            "unsettled": self.unsettled,
            "left": self.left,
            "rate_per_s": self.rate_per_s,
            "rate_from": self.rate_from,
            "eta_s": self.eta_s,
            "pending": vars_of(self.pending) if self.pending is not None else None,
        }


#: What `check_sources` tells its `report` callback of a row: sent now, or changed.
Report = Callable[[str, Planned, "Event | None"], None]


def vars_of(item: Any) -> dict[str, Any]:
    return {name: getattr(item, name) for name in item.__dataclass_fields__}


def job_status(
    ledger: str,
    *,
    settings: Settings | None = None,
    rate: str = "",
    runs: int = 5,
    report: Report | None = None,
) -> JobStatus:
    """Summarise a ledger. With `settings` (sources and mapping), check them against it.

    `rate` (e.g. 450/min) is what the ETA assumes; by default the last run's `--rate`, or
    its measured pace when it learnt the rate (`auto`).
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

    def __init__(self, target: str) -> None:
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
        shard = str(run.options.get("shard") or "")
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


def _eta_rate(ledger: Ledger, rate: str, lines: Sequence[RunLine]) -> tuple[float, str]:
    """Events per second the ETA assumes, and where that figure comes from.

    A given rate (the whole workspace's, shards included); else the last run's `--rate`;
    under `auto`, the pace the last runs measured, summed over shards that ran together.
    """
    if rate and not _is_auto(rate):
        try:
            return parse_rate(rate), f"--rate {rate}"
        except ValueError as exc:
            raise ConfigError(f"--rate: {exc}") from None
    given = str(queries.last_run_options(ledger).get("rate") or "")
    if given and not rate and not _is_auto(given):
        return parse_rate(given), f"the last run's --rate {given}"
    measured = _measured_pace(lines)
    if measured:
        return measured, "the pace the last runs measured (shards running together summed)"
    return parse_rate(AUTO_START_RATE), f"{AUTO_START_RATE} (no run to measure yet)"


def _is_auto(rate: str) -> bool:
    return rate.strip().lower() == "auto"


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
    from backfill.ledger import SqliteLedger
    from backfill.pipeline import prepare_settings

    prepared, selection = prepare_settings(settings)
    mapper, mapping_hash = prepared.mapper, prepared.spec.hash
    rows = to_send = new = invalid = duplicates = changed = 0
    changed_ids: list[str] = []
    with SqliteLedger.scratch() as scratch:
        for chunk in prepared.chunks(limit=settings.limit):
            pairs = selection.keep(event_ids(mapper, chunk))
            rows += len(pairs)
            ids = [(i, row.source, row.position) for row, i in pairs if isinstance(i, str)]
            first_seen = scratch.first_seen(ids)
            entries = ledger.lookup(i for i, _, _ in ids)
            for item in plan(pairs, entries, first_seen):
                if item.decision == Decision.DUPLICATE:
                    duplicates += 1
                elif item.decision == Decision.INVALID:
                    invalid += 1
                elif item.decision == Decision.SEND:
                    mapped = map_row(mapper, item.row, item.external_id)
                    if not isinstance(mapped, Event):
                        invalid += 1
                        continue
                    to_send += 1
                    new += item.entry is None
                    if report is not None:
                        report("send", item, mapped)
                elif item.decision == Decision.SKIP_DONE:
                    entry = item.entry
                    assert entry is not None
                    if entry.mapping_hash == mapping_hash:
                        continue  # the same mapping gives the same payload
                    mapped = map_row(mapper, item.row, item.external_id)
                    event = mapped if isinstance(mapped, Event) else None
                    if event is not None and event.payload_hash == entry.payload_hash:
                        continue
                    changed += 1
                    if len(changed_ids) < CHANGED_KEPT:
                        changed_ids.append(item.external_id)
                    if report is not None:
                        report("changed", item, event)
    return Pending(rows, to_send, new, invalid, duplicates, changed, tuple(changed_ids))
