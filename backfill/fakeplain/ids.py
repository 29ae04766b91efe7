"""Ids and timestamps as Plain writes them: ``tev_`` ULIDs, derived ids, ``DateTime``s."""

from __future__ import annotations

import hashlib
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Final

_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def iso_millis(moment: datetime) -> str:
    """UTC ISO 8601 to the millisecond with a ``Z``, as Plain writes instants.

    >>> iso_millis(datetime(2024, 10, 28, 18, 30, tzinfo=UTC))
    '2024-10-28T18:30:00.000Z'
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def date_time(moment: datetime) -> dict[str, str]:
    """A ``DateTime`` object: ``iso8601`` and ``unixTimestamp`` (milliseconds, as text)."""
    millis = (moment - _EPOCH) // timedelta(milliseconds=1)
    return {"iso8601": iso_millis(moment), "unixTimestamp": str(millis)}


def _base32(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 32)
        chars.append(_CROCKFORD[digit])
    return "".join(reversed(chars))


def derived_id(prefix: str, seed: str) -> str:
    """An id that is always the same for the same ``seed``, shaped like Plain's."""
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:17], "big")
    return prefix + _base32(digest, 26)


class EventIds:
    """New event ids, unique for the life of the object."""

    def __init__(self) -> None:
        self._random = random.Random()
        self._sequence = 0

    def new(self) -> str:
        """Return a new ``tev_`` id."""
        self._sequence += 1
        millis = time.time_ns() // 1_000_000
        # A ULID: 48 bits of time, then 80 bits that the sequence number keeps unique.
        randomness = (self._random.getrandbits(48) << 32) | (self._sequence & 0xFFFFFFFF)
        return "tev_" + _base32((millis << 80) | randomness, 26)
