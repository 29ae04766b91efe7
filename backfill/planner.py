"""The one planning loop: which rows to send, skip or report, decided from the key columns
and the ledger. `run`, dry runs, `validate` and `status` all plan through it.

Each chunk of source rows is identified (externalIds from the key columns only), cut to
the rows the command takes (shard, window), looked up (where each id was first seen in
this input, what the ledger holds), and decided. Only rows to send are rendered, and
delivered rows only when the mapping changed since they were sent, to tell whether
their payload would now differ. Pure: the ledger is a view passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from backfill.config import Settings
from backfill.mapper import Mapper, event_ids, map_row
from backfill.models import (
    DONE,
    Event,
    Invalid,
    LedgerEntry,
    LedgerView,
    RowProblem,
    SourceRow,
    Status,
)
from backfill.selection import Selection

#: Chunks read (and looked up in the ledger) ahead of the one being decided.
LOOKAHEAD_CHUNKS: Final = 3


class Decision(StrEnum):
    SEND = "send"
    SKIP_DONE = "skip_done"
    KEEP_REJECTED = "keep_rejected"
    DUPLICATE = "duplicate"
    INVALID = "invalid"


@dataclass(slots=True)
class Planned:
    """A row and what the run does with it (read-only; not frozen, see `SourceRow`).

    Once settled (`settle`): a row to send has its `event`; a row found invalid when
    rendered is `INVALID` with its `problem`; a delivered row rendered again because the
    mapping changed has `changed` set when its payload would differ (`event` is then the
    new payload, or None when the row no longer maps).
    """

    row: SourceRow
    external_id: str
    decision: Decision
    entry: LedgerEntry | None = None
    problem: RowProblem | None = None
    event: Event | None = None
    changed: bool = False

    @property
    def invalid(self) -> Invalid:
        """An invalid or duplicate row as a record of why it never became an event."""
        assert self.problem is not None
        return Invalid(self.row.source, self.row.position, self.problem, self.external_id)


@dataclass(frozen=True, slots=True)
class Resend:
    """Which rejected rows are sent again: those refused with one of `codes`, or all (None)."""

    codes: frozenset[str] | None = frozenset()

    def __call__(self, entry: LedgerEntry) -> bool:
        return self.codes is None or entry.code in self.codes

    @classmethod
    def of(cls, settings: Settings) -> Resend:
        """Which rejected rows a run sends again: `--retry-rejected` (all, or one code), and
        with `--upsert-customers` those refused for a missing customer, upserted now."""
        if settings.retry_rejected and not settings.retry_code:
            return cls(codes=None)
        codes = {settings.retry_code} if settings.retry_rejected else set()
        if settings.upsert_customers:
            codes.add("not_found")
        return cls(codes=frozenset(codes))


def plan(
    rows: Sequence[tuple[SourceRow, str | RowProblem]],
    entries: Mapping[str, LedgerEntry],
    first_seen: Mapping[str, tuple[str, str]],
    *,
    resend: Resend = Resend(),
) -> list[Planned]:
    """Decide for each (row, externalId or problem) pair, in order.

    `entries` is what the ledger holds for these ids; `first_seen` says where an id
    repeated in this run's input was seen first (see `SqliteLedger.first_seen`).
    The table in README "Statuses" is this function. Rejected rows are kept, except
    those `resend` picks (`--retry-rejected [--code C]`, or `not_found` when the run
    upserts the customers that were missing).
    """
    planned = []
    for row, ident in rows:
        if row.problem is not None:
            planned.append(Planned(row, "", Decision.INVALID, problem=row.problem))
            continue
        if isinstance(ident, RowProblem):
            planned.append(Planned(row, "", Decision.INVALID, problem=ident))
            continue
        first = first_seen.get(ident)
        if first is not None and first != (row.source, row.position):
            problem = RowProblem(
                "duplicate_in_source", f"same externalId as {first[0]} line {first[1]}"
            )
            planned.append(Planned(row, ident, Decision.DUPLICATE, problem=problem))
            continue
        entry = entries.get(ident)
        if entry is not None and entry.status in DONE:
            planned.append(Planned(row, ident, Decision.SKIP_DONE, entry))
        elif entry is not None and entry.status == Status.REJECTED and not resend(entry):
            planned.append(Planned(row, ident, Decision.KEEP_REJECTED, entry))
        else:
            planned.append(Planned(row, ident, Decision.SEND, entry))
    return planned


Pair = tuple[SourceRow, str | RowProblem]


@dataclass(frozen=True, slots=True)
class Known:
    """What the ledger knows of a chunk's ids: where repeats were first seen, and entries."""

    first_seen: Mapping[str, tuple[str, str]]
    entries: Mapping[str, LedgerEntry]


@dataclass(frozen=True, slots=True)
class Rules:
    """How a command plans: its mapping, the rows it takes, what it sends again."""

    mapper: Mapper
    selection: Selection
    resend: Resend = Resend()
    #: `--upsert-customers`: a customer event whose customer cannot be upserted is invalid.
    upsert: bool = False
    #: Whether events carry their payload hash (`validate` needs none).
    hashed: bool = True

    @classmethod
    def of(cls, settings: Settings, mapper: Mapper, selection: Selection) -> Rules:
        return cls(mapper, selection, Resend.of(settings), upsert=settings.upsert_customers)


@dataclass(frozen=True, slots=True)
class Identified:
    """A chunk's rows with their externalId (or why none), and the ledger's answer to come."""

    pairs: list[Pair]
    known: Future[Known]
    #: How much of the sources was read once this chunk was (for estimates).
    read_fraction: float


def known_from(
    ids_seen: LedgerView, entries: LedgerView | None
) -> Callable[[list[tuple[str, str, str]]], Known]:
    """Look ids up: repeats through `ids_seen`, entries in `entries` (None: no ledger)."""

    def known(ids: list[tuple[str, str, str]]) -> Known:
        first_seen = ids_seen.first_seen(ids)
        found = entries.lookup(i for i, _, _ in ids) if entries is not None else {}
        return Known(first_seen, found)

    return known


def identified(
    chunks: Iterable[list[SourceRow]],
    rules: Rules,
    known: Callable[[list[tuple[str, str, str]]], Known],
    *,
    read_fraction: Callable[[], float] = lambda: 0.0,
    stopped: Callable[[], bool] = lambda: False,
) -> Iterator[Identified]:
    """Chunks with their ids, and the ledger's answer for them, read ahead.

    The ledger answers from a worker thread (SQLite lets go of the GIL) while earlier
    chunks are decided and reported and later ones read. Reading `LOOKAHEAD_CHUNKS`
    ahead gives the worker time to win the GIL back between its statements.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="ledger-lookup") as lookups:
        ahead: deque[Identified] = deque()
        for chunk in chunks:
            pairs = rules.selection.keep(event_ids(rules.mapper, chunk))
            ids = [(i, row.source, row.position) for row, i in pairs if isinstance(i, str)]
            ahead.append(Identified(pairs, lookups.submit(known, ids), read_fraction()))
            if len(ahead) > LOOKAHEAD_CHUNKS:
                yield ahead.popleft()
                if stopped():
                    return
        while ahead and not stopped():
            yield ahead.popleft()


def settle(rules: Rules, pairs: Sequence[Pair], known: Known) -> list[Planned]:
    """Decide a chunk and render what needs it: rows to send (which may turn out invalid)
    and delivered rows whose mapping changed since they were sent."""
    planned = plan(pairs, known.entries, known.first_seen, resend=rules.resend)
    for item in planned:
        if item.decision == Decision.SEND:
            mapped = _mapped(rules, item)
            if isinstance(mapped, Event):
                item.event = mapped
            else:
                item.decision, item.problem = Decision.INVALID, mapped.problem
        elif item.decision == Decision.SKIP_DONE:
            entry = item.entry
            assert entry is not None
            if entry.mapping_hash == rules.mapper.spec.hash:
                continue  # the same mapping gives the same payload
            mapped = map_row(rules.mapper, item.row, item.external_id)
            event = mapped if isinstance(mapped, Event) else None
            item.changed = event is None or event.payload_hash != entry.payload_hash
            item.event = event if item.changed else None
    return planned


def planned(
    chunks: Iterable[list[SourceRow]],
    rules: Rules,
    known: Callable[[list[tuple[str, str, str]]], Known],
) -> Iterator[list[Planned]]:
    """Every chunk planned, in order: `identified` then `settle`, for callers that wait."""
    for chunk in identified(chunks, rules, known):
        yield settle(rules, chunk.pairs, chunk.known.result())


def _mapped(rules: Rules, item: Planned) -> Event | Invalid:
    mapped = map_row(
        rules.mapper, item.row, item.external_id, hashed=rules.hashed, upsert=rules.upsert
    )
    if not isinstance(mapped, Event) or not rules.upsert:
        return mapped
    if not mapped.customer or mapped.upsert is not None:
        return mapped
    problem = RowProblem("cannot_upsert", f"cannot upsert the customer: {mapped.upsert_problem}")
    return Invalid(mapped.source, mapped.position, problem, mapped.external_id)
