"""What a ledger says of a job: `backfill status`, and what is left to send.

Read-only: the ledger is opened as it is and nothing is written. Given the sources and
the mapping as well, the rows are mapped again and looked up, as a dry run would, to
tell what is left to send and which delivered rows the current mapping would send
differently (their payload hash changed).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from backfill.config import AUTO_START_RATE, Settings, parse_rate
from backfill.errors import ConfigError, LedgerError
from backfill.ledger import open_ledger
from backfill.models import Event, Status
from backfill.planner import Decision, Planned, Rules, known_from, planned

if TYPE_CHECKING:
    from backfill.ledger import Ledger

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
        from backfill.ledger import is_postgres_url
        from backfill.urls import is_url

        if not is_postgres_url(self.target):
            from pathlib import Path

            file = re.sub(r"^sqlite(?:\+\w+)?:///", "", self.target)
            if not is_url(file) and not Path(file).is_file():
                raise LedgerError(f"no ledger at {file}: give --ledger (a run's ledger)")
        self.ledger = open_ledger(self.target, readonly=True)
        return self.ledger

    def __exit__(self, *exc: object) -> None:
        if self.ledger is not None:
            self.ledger.close()


def issue_aware_counts(ledger: Ledger) -> dict[str, int]:
    """Rows per status: the events, and the rows that never became one (invalid,
    duplicate_in_source) as the latest run that read them found them."""
    counts = Counter(ledger.status_counts())
    counts.subtract(superseded(ledger).values())
    for status, n in ledger.query(
        f"SELECT status, COUNT(*) FROM ({LATEST_ISSUES}) AS latest GROUP BY status"
    ):
        counts[str(status)] += int(n)
    return dict(sorted(((s, n) for s, n in counts.items() if n > 0), key=lambda kv: -kv[1]))


#: Each source row's latest issue, unless the row has become an event since. Joins, not
#: correlated subqueries: a ledger of an older version, opened read-only, may lack the
#: indexes on places (schema version 4), and the database then hashes instead.
LATEST_ISSUES: Final = (
    "SELECT i.run_id, i.external_id, i.status, i.source, i.position, i.column_name,"
    " i.code, i.message, i.created_at FROM row_issues i"
    " JOIN (SELECT source, position, MAX(created_at) AS latest FROM row_issues"
    " GROUP BY source, position) l ON l.source = i.source AND l.position = i.position"
    " AND l.latest = i.created_at"
    " LEFT JOIN events e ON e.source = i.source AND e.position = i.position"
    " AND e.updated_at > i.created_at"
    " AND (i.status <> 'duplicate_in_source' OR e.external_id <> i.external_id)"
    " WHERE e.external_id IS NULL"
)
#: Events not delivered whose row a later run found invalid: the row's word now is
#: `invalid` (a re-run maps it again rather than sending the event). Delivered events
#: always count: they are in Plain.
SUPERSEDED: Final = (
    "SELECT e.external_id, e.status FROM events e"
    f" JOIN ({LATEST_ISSUES}) AS i ON i.source = e.source AND i.position = e.position"
    " AND i.created_at > e.updated_at AND i.status = 'invalid'"
    " WHERE e.status IN ('rejected', 'retryable', 'in_flight')"
)


def superseded(ledger: Ledger) -> dict[str, str]:
    """The events `SUPERSEDED` leaves out, with their status."""
    return {str(ext_id): str(status) for ext_id, status in ledger.query(SUPERSEDED)}


def top_codes(ledger: Ledger, limit: int = TOP_CODES) -> list[CodeCount]:
    """The commonest error codes among rows not delivered, with a sample message each."""
    rows = ledger.query(
        "SELECT code, status, COUNT(*), MIN(message) FROM events"
        " WHERE status IN ('rejected', 'retryable', 'in_flight') AND code IS NOT NULL"
        " AND code <> '' GROUP BY code, status"
    ) + ledger.query(
        f"SELECT code, status, COUNT(*), MIN(message) FROM ({LATEST_ISSUES}) AS latest"
        " WHERE status = 'invalid' GROUP BY code, status"
    )
    codes = [CodeCount(str(c), str(s), int(n), str(m or "")) for c, s, n, m in rows]
    return sorted(codes, key=lambda c: (-c.rows, c.code))[:limit]


def run_lines(ledger: Ledger, limit: int) -> list[RunLine]:
    """The last `limit` runs, newest first, with what each delivered and how fast."""
    delivered = dict(
        ledger.query(
            "SELECT delivered_by, COUNT(*) FROM events WHERE delivered_by IS NOT NULL"
            " GROUP BY delivered_by"
        )
    )
    rows = ledger.query(
        "SELECT run_id, state, started_at, ended_at, heartbeat_at, exit_code, options FROM runs"
        " ORDER BY started_at DESC LIMIT ?",
        (limit,),
    )
    now = time.time()
    lines = []
    for run_id, state, started, ended, beat, exit_code, options in rows:
        n = int(delivered.get(run_id, 0))
        until = ended or (beat if state != "running" else now) or now
        elapsed = max(float(until) - float(started), 1e-3)
        shard = str(json.loads(options or "{}").get("shard") or "")
        lines.append(
            RunLine(run_id, state, started, ended, exit_code, n, round(n / elapsed, 2), shard)
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
    rows = ledger.query("SELECT options FROM runs ORDER BY started_at DESC LIMIT 1")
    given = str(json.loads(rows[0][0] or "{}").get("rate") or "") if rows else ""
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
