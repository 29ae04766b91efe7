"""The reads `backfill status` and `backfill export` make, on a ledger of either kind.

A source row that never became an event (invalid, or a duplicate in its source) is
kept in `row_issues` by every run that read it; the row's word now is its latest
issue, unless the row has become an event since. These queries apply that rule, so
that `status` counts and `export` writes each source row once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from backfill.models import Ledger

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
#: A page of events in externalId order after a given one, along the primary key.
EVENTS_PAGE: Final = (
    "SELECT external_id, COALESCE(delivered_by, run_id), status, plain_event_id, source,"
    " position, code, message, event_timestamp, attempts, sent_at, answered_at,"
    " latency_ms FROM events WHERE external_id > :after ORDER BY external_id LIMIT :limit"
)
#: A page of source rows that never became an event, each at its latest issue, in place
#: order after a given place; `superseded` is 1 when the row has become an event since.
ISSUES_PAGE: Final = (
    "SELECT i.run_id, i.external_id, i.status, i.source, i.position, i.column_name, i.code,"
    " i.message, CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.source = i.source"
    " AND e.position = i.position AND e.updated_at > i.created_at"
    " AND (i.status <> 'duplicate_in_source' OR e.external_id <> i.external_id))"
    " THEN 1 ELSE 0 END AS superseded"
    " FROM (SELECT source, position, MAX(created_at) AS latest FROM row_issues"
    " WHERE source > :source OR (source = :source AND position > :position)"
    " GROUP BY source, position ORDER BY source, position LIMIT :limit) AS l"
    " JOIN row_issues i ON i.source = l.source AND i.position = l.position"
    " AND i.created_at = l.latest ORDER BY i.source, i.position"
)


@dataclass(frozen=True, slots=True)
class RunActivity:
    """A run as `status` lists it: the runs table's row and the events it delivered."""

    run_id: str
    state: str
    started_at: float
    ended_at: float | None
    heartbeat_at: float | None
    exit_code: int | None
    options: Mapping[str, Any]
    delivered: int


def row_counts(ledger: Ledger) -> dict[str, int]:
    """Rows per status, most first: the events, and the rows that never became one
    (invalid, duplicate_in_source) as the latest run that read them found them.

    >>> row_counts(ledger)  # doctest: +SKIP
    {'delivered': 288, 'invalid': 12}
    """
    counts = Counter(ledger.status_counts())
    counts.subtract(superseded(ledger).values())
    for status, n in ledger.query(
        f"SELECT status, COUNT(*) FROM ({LATEST_ISSUES}) AS latest GROUP BY status"
    ):
        counts[str(status)] += int(n)
    return dict(sorted(((s, n) for s, n in counts.items() if n > 0), key=lambda kv: -kv[1]))


def superseded(ledger: Ledger) -> dict[str, str]:
    """The events `SUPERSEDED` leaves out, with their status."""
    return {str(ext_id): str(status) for ext_id, status in ledger.query(SUPERSEDED)}


def error_codes(ledger: Ledger) -> list[tuple[str, str, int, str]]:
    """Error codes among rows not delivered: (code, status, rows, a sample message) each."""
    rows = ledger.query(
        "SELECT code, status, COUNT(*), MIN(message) FROM events"
        " WHERE status IN ('rejected', 'retryable', 'in_flight') AND code IS NOT NULL"
        " AND code <> '' GROUP BY code, status"
    ) + ledger.query(
        f"SELECT code, status, COUNT(*), MIN(message) FROM ({LATEST_ISSUES}) AS latest"
        " WHERE status = 'invalid' GROUP BY code, status"
    )
    return [(str(c), str(s), int(n), str(m or "")) for c, s, n, m in rows]


def recent_runs(ledger: Ledger, limit: int) -> list[RunActivity]:
    """The last `limit` runs, newest first, with the events each delivered."""
    delivered = dict(
        ledger.query(
            "SELECT delivered_by, COUNT(*) FROM events WHERE delivered_by IS NOT NULL"
            " GROUP BY delivered_by"
        )
    )
    rows = ledger.query(
        "SELECT run_id, state, started_at, ended_at, heartbeat_at, exit_code, options FROM runs"
        " ORDER BY started_at DESC LIMIT :limit",
        {"limit": limit},
    )
    return [
        RunActivity(
            run_id,
            state,
            started,
            ended,
            beat,
            code,
            _options(options),
            int(delivered.get(run_id, 0)),
        )
        for run_id, state, started, ended, beat, code, options in rows
    ]


def last_run_options(ledger: Ledger) -> Mapping[str, Any]:
    """The options the newest run was given (none when no run is recorded)."""
    rows = ledger.query("SELECT options FROM runs ORDER BY started_at DESC LIMIT 1")
    return _options(rows[0][0]) if rows else {}


def events_page(ledger: Ledger, after: str, limit: int) -> list[tuple[Any, ...]]:
    """Up to `limit` events after the externalId `after`, in externalId order (keyset
    pages: memory stays flat), as `EVENTS_PAGE` selects them."""
    return ledger.query(EVENTS_PAGE, {"after": after, "limit": limit})


def issues_page(ledger: Ledger, after: tuple[str, str], limit: int) -> list[tuple[Any, ...]]:
    """Source rows that never became an event, at up to `limit` places (source, position)
    after `after`, in place order, as `ISSUES_PAGE` selects them."""
    source, position = after
    return ledger.query(ISSUES_PAGE, {"source": source, "position": position, "limit": limit})


def _options(text: str | None) -> Mapping[str, Any]:
    options: Mapping[str, Any] = json.loads(text or "{}")
    return options
