"""Records that cross a stage boundary, the Status enum and the swappable parts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol, Self


class Status(StrEnum):
    """What became of an event or a source row (see README, "Statuses")."""

    DELIVERED = "delivered"
    ALREADY_EXISTED = "already_existed"
    INVALID = "invalid"
    DUPLICATE_IN_SOURCE = "duplicate_in_source"
    REJECTED = "rejected"
    RETRYABLE = "retryable"
    IN_FLIGHT = "in_flight"


#: Statuses that mean Plain holds the event: a re-run skips them without a request.
DONE = frozenset({Status.DELIVERED, Status.ALREADY_EXISTED})
#: Statuses that make a run end with exit code 1.
FAILED = frozenset({Status.INVALID, Status.REJECTED, Status.RETRYABLE})


class EventKind(StrEnum):
    """Which Plain mutation an event becomes."""

    CUSTOMER = "customer"
    THREAD = "thread"


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why a row cannot become an event: the column (if any), a code and a message."""

    code: str
    message: str
    column: str = ""


@dataclass(slots=True)
class SourceRow:
    """One record of a source, values as text, with where it came from.

    `position` is the record's first physical line for CSV. A row the reader could
    not split honestly (too few or too many fields, bad bytes) carries a `problem`.
    Treat it as read-only: it is not frozen only because a frozen dataclass costs four
    times as much to create, and there is one per row.
    """

    source: str
    position: str
    values: Mapping[str, str]
    problem: RowProblem | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A mapped row: the `input` variables of one Plain mutation and its identity."""

    external_id: str
    kind: EventKind
    input: Mapping[str, Any]
    payload_hash: str
    source: str
    position: str
    timestamp: str
    note: str = ""
    #: The customer as `<identifier field>:<value>` (customer events only).
    customer: str = ""
    #: The `UpsertCustomerInput` for `--upsert-customers`, or why there is none.
    upsert: Mapping[str, Any] | None = None
    upsert_problem: str = ""


@dataclass(frozen=True, slots=True)
class Invalid:
    """A row that failed mapping or offline checks; never sent."""

    source: str
    position: str
    problem: RowProblem
    external_id: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final answer for one event after retries."""

    status: Status
    attempts: int
    plain_event_id: str = ""
    plain_customer_id: str = ""
    code: str = ""
    message: str = ""
    sent_at: float = 0.0
    answered_at: float = 0.0
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request outcome for one event (a 429 is recorded too, it is not a failure)."""

    external_id: str
    attempt: int
    outcome: str
    sent_at: float
    answered_at: float
    http_status: int | None = None
    code: str = ""
    message: str = ""

    @property
    def latency_ms(self) -> float:
        return round((self.answered_at - self.sent_at) * 1000, 1)


@dataclass(slots=True)
class LedgerEntry:
    """What the ledger knows of one externalId, as the planner needs it.

    Read-only, but not frozen: a resume creates one per row (see `SourceRow`).
    """

    external_id: str
    status: Status
    payload_hash: str
    mapping_hash: str
    run_id: str
    source: str
    position: str
    plain_event_id: str = ""
    code: str = ""
    message: str = ""
    attempts: int = 0
    event_timestamp: str = ""


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One line of results.csv / failed.csv / export (the documented column set)."""

    run_id: str
    external_id: str
    status: str
    plain_event_id: str = ""
    source: str = ""
    position: str = ""
    column: str = ""
    code: str = ""
    message: str = ""
    note: str = ""
    event_timestamp: str = ""
    attempts: int | str = ""
    sent_at: str = ""
    answered_at: str = ""
    latency_ms: float | str = ""


RESULT_COLUMNS: tuple[str, ...] = tuple(ResultRow.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Workspace:
    """The workspace an API key writes to, as the preflight query reports it."""

    id: str
    name: str
    permissions: frozenset[str]


@dataclass(slots=True)
class Counts:
    """Rows per final status in one run, plus what the run learnt along the way."""

    by_status: dict[str, int] = field(default_factory=dict)
    rows_read: int = 0
    skipped_done: int = 0
    changed_payloads: int = 0

    def add(self, status: Status | str, n: int = 1) -> None:
        self.by_status[str(status)] = self.by_status.get(str(status), 0) + n

    def get(self, status: Status) -> int:
        return self.by_status.get(str(status), 0)


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """A customer's upsert outcome: `delivered` (exists in Plain) or `rejected`."""

    identifier: str
    status: Status
    plain_customer_id: str = ""
    code: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as the runs table keeps it."""

    run_id: str
    state: str
    mapping_hash: str
    id_rule: str
    id_format_version: int


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of a running job, for progress bars and log lines."""

    rows_read: int
    settled: int
    delivered: int
    failed: int
    skipped: int
    requests: int
    elapsed_s: float
    #: Rows the sources are expected to hold (from the bytes read so far), or None early on.
    estimated_rows: int | None = None

    @property
    def events_per_s(self) -> float:
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace so far, once there is a pace to tell it by."""
        if self.estimated_rows is None or self.settled < 20 or self.elapsed_s < 2.0:
            return None
        return max(0, self.estimated_rows - self.settled) * self.elapsed_s / self.settled


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
            "codes": [asdict(code) for code in self.codes],
            "runs": [asdict(run) for run in self.runs],
            "unsettled": self.unsettled,
            "left": self.left,
            "rate_per_s": self.rate_per_s,
            "rate_from": self.rate_from,
            "eta_s": self.eta_s,
            "pending": asdict(self.pending) if self.pending is not None else None,
        }


ProgressCallback = Callable[[Progress], None]
NoticeCallback = Callable[[str], None]


class LedgerView(Protocol):
    """The part of a ledger planning reads (a scratch database can stand in for one)."""

    def first_seen(self, rows: Sequence[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
        """Where each id (of `rows`: id, source, position) was first met in this input."""
        ...

    def lookup(self, external_ids: Iterable[str]) -> dict[str, LedgerEntry]: ...


class Ledger(LedgerView, Protocol):
    """A ledger of either kind (SQLite file, PostgreSQL database): what the job, `status`,
    `export` and Airflow ask of it. `backfill.ledger.open_ledger` gives one."""

    @property
    def path(self) -> str:
        """Where the ledger is, as it may be shown (a database URL's password masked)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def start_run(
        self,
        run_id: str,
        *,
        options: Mapping[str, Any],
        mapping_hash: str,
        id_rule: str,
        id_format_version: int,
    ) -> None: ...

    def end_run(
        self,
        run_id: str,
        *,
        state: str,
        exit_code: int,
        counts: Mapping[str, Any],
        workspace_id: str,
    ) -> None: ...

    def heartbeat(self, run_id: str) -> None: ...

    def record_issues(self, run_id: str, issues: Sequence[tuple[Invalid, Status]]) -> None: ...

    def mark_in_flight(
        self, run_id: str, events: Sequence[Event], *, mapping_hash: str, claim_s: float
    ) -> set[str]: ...

    def record_outcomes(
        self,
        run_id: str,
        outcomes: Sequence[tuple[Event, Outcome]],
        attempts: Sequence[Attempt],
    ) -> None: ...

    def record_attempts(self, run_id: str, attempts: Sequence[Attempt]) -> None: ...

    def customers(self, identifiers: Iterable[str]) -> dict[str, CustomerRecord]: ...

    def record_customer(self, run_id: str, record: CustomerRecord, result: str = "") -> None: ...

    def first_customer_sighting(self, identifier: str) -> bool: ...

    def status_counts(self) -> dict[str, int]: ...

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows of a read: `?` placeholders with a sequence, `:name` ones with a mapping."""
        ...


class Clock(Protocol):
    """Monotonic time and sleeping, injected so limiter tests never sleep."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        import asyncio

        await asyncio.sleep(max(0.0, seconds))
