"""Pacing and backoff arithmetic (pure; time is passed in, nothing sleeps here)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Final

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_SECONDS: Final = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


def parse_rate(text: str) -> float:
    """Requests per second from a rate such as ``450/min`` or ``7.5/s``.

    >>> parse_rate("450/min")
    7.5
    """
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"not a rate: {text!r} (write e.g. 450/min or 7.5/s)")
    per_second = float(match.group(1)) / _UNIT_SECONDS[match.group(2)]
    if per_second <= 0:
        raise ValueError(f"the rate must be above zero: {text!r}")
    return per_second


@dataclass(slots=True)
class Pacer:
    """Spaces requests evenly at `rate` per second, shared by every sender.

    A generic cell rate algorithm: each request reserves the next free slot, so
    concurrent senders never exceed the budget together. `pause_until` holds every
    slot back until a time (a 429's reset), not just the one sender that saw it.

    >>> pacer = Pacer(rate=2.0)
    >>> [pacer.reserve(now=0.0) for _ in range(3)]
    [0.0, 0.5, 1.0]
    """

    rate: float
    held_until: float = float("-inf")
    _next: float = field(default=float("-inf"))

    def reserve(self, now: float) -> float:
        """Claim the next slot; return how long to wait before sending."""
        slot = max(self._next, now)
        self._next = slot + 1.0 / self.rate
        return slot - now

    def pause_until(self, when: float) -> None:
        """No slot before `when` (every sender waits)."""
        self.held_until = max(self.held_until, when)
        self._next = max(self._next, when)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits about base * 2**(n-1), capped."""

    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, rand: random.Random | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based): half fixed, half random.

        >>> Backoff(base_s=1.0, cap_s=8.0).delay(10, random.Random(0)) <= 8.0
        True
        """
        ceiling = min(self.cap_s, self.base_s * 2.0 ** max(0, attempt - 1))
        jitter = float((rand or random).random())
        return ceiling / 2 + jitter * ceiling / 2
