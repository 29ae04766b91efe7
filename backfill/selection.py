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
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Final

from backfill.ids import KeyValueError, parse_epoch, parse_timestamp
from backfill.models import RowProblem, SourceRow

_SHARD: Final = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*\Z")
#: More shards than this is a typo, not a plan (each shard is a task of its own).
MAX_SHARDS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count` (0-based, as Airflow's `map_index`)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N` with `0 <= I < N`; any other form is refused.

        >>> Shard.parse("2/4")
        Shard(index=2, count=4)
        """
        match = _SHARD.match(text)
        if match is None:
            raise ValueError(f"not a shard: {text!r} (write I/N with 0 <= I < N, e.g. 0/4)")
        index, count = int(match[1]), int(match[2])
        if not 0 <= index < count or count > MAX_SHARDS:
            raise ValueError(
                f"not a shard: {text!r} (I/N needs 0 <= I < N and N <= {MAX_SHARDS}; "
                "shards count from 0, as Airflow's map_index)"
            )
        return cls(index, count)

    def holds(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index

    @property
    def label(self) -> str:
        """How result folders name it: `shard-I-of-N`."""
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


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
class Window:
    """Rows whose timestamp is at or after `since` and before `until` (either may be open)."""

    since: datetime | None = None
    until: datetime | None = None

    def holds(self, moment: datetime) -> bool:
        if self.since is not None and moment < self.since:
            return False
        return self.until is None or moment < self.until

    def __bool__(self) -> bool:
        return self.since is not None or self.until is not None


def parse_bound(text: str, tz: tzinfo, *, name: str) -> datetime | None:
    """A `--since` / `--until` value: ISO 8601, read in `tz` when it has no offset."""
    if not text.strip():
        return None
    try:
        return parse_timestamp(text, tz)
    except KeyValueError as exc:
        raise ValueError(f"--{name}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Selection:
    """A run's rows: those of its shard, in its window. Empty: every row."""

    shard: Shard | None = None
    window: Window = Window()
    #: The mapping's timestamp column, how to read it, and its zone for values with none.
    timestamp_column: str = ""
    timestamp_unit: str = ""
    tz: tzinfo | None = None

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
        if self.shard is not None and not self.shard.holds(shard_key(row, ident)):
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
