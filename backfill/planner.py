"""Which rows to send, skip or report, decided from key columns and the ledger (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from backfill.models import DONE, LedgerEntry, RowProblem, SourceRow, Status


class Decision(StrEnum):
    SEND = "send"
    SKIP_DONE = "skip_done"
    KEEP_REJECTED = "keep_rejected"
    DUPLICATE = "duplicate"
    INVALID = "invalid"


@dataclass(slots=True)
class Planned:
    """A row and what the run does with it (read-only; not frozen, see `SourceRow`)."""

    row: SourceRow
    external_id: str
    decision: Decision
    entry: LedgerEntry | None = None
    problem: RowProblem | None = None


@dataclass(frozen=True, slots=True)
class Resend:
    """Which rejected rows are sent again: those refused with one of `codes`, or all (None)."""

    codes: frozenset[str] | None = frozenset()

    def __call__(self, entry: LedgerEntry) -> bool:
        return self.codes is None or entry.code in self.codes


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
