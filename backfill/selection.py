"""Which rows a run takes: its shard of the job (`--shard I/N`) and its time window
(`--since` / `--until`). Pure.

A shard is a stable slice by externalId hash, so a task and its retry (on any worker)
take the same rows, every repeat of an id lands in one shard, and the N shards
partition any input exactly. A row with no externalId (an invalid one) is placed by
its source and position instead, so exactly one shard reports it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Final

from backfill.config import Settings, Shard, Window
from backfill.ids import KeyValueError, parse_epoch, parse_timestamp
from backfill.mapping import MappingSpec
from backfill.models import RowProblem, SourceRow


def shard_of(key: str, count: int) -> int:
    """The shard (0..count-1) a key falls in: stable across processes and versions.

    >>> shard_of("acme_1f3a", 1)
    0
    """
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def shard_key(row: SourceRow, ident: str | RowProblem) -> str:
    """What places a row in a shard: its externalId, or where it is when it has none."""
    return ident if isinstance(ident, str) else f"\x00{row.source}\x00{row.position}"


@dataclass(frozen=True, slots=True)
class Selection:
    """A run's rows: those of its shard, in its window. Empty: every row."""

    shard: Shard | None = None
    #: In UTC (bounds without offset already read in the mapping's zone).
    window: Window = Window()
    #: The mapping's timestamp column, how to read it, and its zone for values with none.
    timestamp_column: str = ""
    timestamp_unit: str = ""
    tz: tzinfo | None = None

    @classmethod
    def of(cls, settings: Settings, spec: MappingSpec) -> Selection:
        """The rows `settings` take of a job whose mapping is `spec`."""
        return cls(
            shard=settings.shard,
            window=settings.window.in_zone(spec.tz),
            timestamp_column=spec.timestamp_column,
            timestamp_unit=spec.timestamp_unit,
            tz=spec.tz,
        )

    def __bool__(self) -> bool:
        return self.shard is not None or bool(self.window)

    def keep(
        self, pairs: Sequence[tuple[SourceRow, str | RowProblem]]
    ) -> list[tuple[SourceRow, str | RowProblem]]:
        """The pairs (row, externalId or problem) this run takes, in order."""
        if not self:
            return list(pairs)
        return [pair for pair in pairs if self.takes(*pair)]

    def takes(self, row: SourceRow, ident: str | RowProblem) -> bool:
        shard = self.shard
        if shard is not None and shard_of(shard_key(row, ident), shard.count) != shard.index:
            return False
        if not self.window:
            return True
        moment = self.moment(row)
        # A row without a readable timestamp is in every window: it is reported as
        # invalid by each run rather than by none.
        return moment is None or self.window.holds(moment)

    def moment(self, row: SourceRow) -> datetime | None:
        if row.problem is not None:
            return None
        text = row.values.get(self.timestamp_column)
        if text is None:
            return None
        try:
            if self.timestamp_unit:
                return parse_epoch(text, self.timestamp_unit)
            assert self.tz is not None
            return parse_timestamp(text, self.tz)
        except KeyValueError:
            return None


#: How far the bounds bound into a query reach beyond the window: a query compares them
#: with its column as the database sees it (text in another ISO form, or a timestamp
#: without zone in another zone), so it fetches whole days around the window and the run
#: keeps exactly the window's rows.
QUERY_MARGIN: Final = timedelta(days=1)
_UNITS: Final = {"s": 1, "ms": 1_000, "us": 1_000_000}


def query_bounds(selection: Selection) -> dict[str, str]:
    """`since` / `until` for a query's `:since` / `:until`: whole days (`YYYY-MM-DD`) at
    least a day beyond the window, or Unix time in the column's unit.

    >>> window = Window(datetime(2024, 5, 1, 4, tzinfo=UTC), datetime(2024, 5, 2, 4, tzinfo=UTC))
    >>> query_bounds(Selection(window=window))
    {'since': '2024-04-30', 'until': '2024-05-04'}
    """
    bounds = {}
    for name, bound, step in (
        ("since", selection.window.since, -QUERY_MARGIN),
        ("until", selection.window.until, QUERY_MARGIN * 2),
    ):
        if bound is None:
            continue
        if selection.timestamp_unit:
            moment = bound + step
            bounds[name] = str(math.floor(moment.timestamp()) * _UNITS[selection.timestamp_unit])
        else:
            bounds[name] = (bound + step).date().isoformat()
    return bounds
