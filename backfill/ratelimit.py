"""Pacing and backoff arithmetic (pure; time is passed in, nothing sleeps here)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from backfill.plain import Budget


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
    _last: float = field(default=float("-inf"))

    def reserve(self, now: float) -> float:
        """Claim the next slot; return how long to wait before sending."""
        slot = max(self._next, now)
        self._last = slot
        self._next = slot + 1.0 / self.rate
        return slot - now

    def claim(self, now: float, horizon: float) -> float | None:
        """Claim the next slot if it is at most `horizon` away: the wait, else None.

        >>> pacer = Pacer(rate=1.0)
        >>> pacer.claim(0.0, horizon=0.5), pacer.claim(0.0, horizon=0.5)
        (0.0, None)
        """
        if max(self._next, now) - now > horizon:
            return None
        return self.reserve(now)

    def set_rate(self, rate: float) -> None:
        """Pace at `rate` from the last slot on (slots already claimed keep their time)."""
        self.rate = rate
        self._next = max(self.held_until, self._last + 1.0 / rate)

    def pause_until(self, when: float) -> None:
        """No slot before `when` (every sender waits)."""
        self.held_until = max(self.held_until, when)
        self._next = max(self._next, when)


@dataclass(slots=True)
class AutoRate:
    """`--rate auto`: spend what is left of the window, less the headroom, evenly until the reset.

    Fed every response's `x-ratelimit-*` headers (as a `Budget`), it returns the rate to
    pace at and, when the window's share is spent, the moment to hold every sender
    until. Traffic from the workspace's other integrations shows as `remaining` falling
    faster than this run spends it, so the pace falls with it. The window's length is
    learnt from successive resets.

    >>> auto = AutoRate(headroom=0.1)
    >>> auto.observe(Budget(limit=100, remaining=99, reset_in_s=10.0), now=0.0)
    (8.9, 0.0)
    """

    headroom: float = 0.1
    #: The share of what is left after the headroom that this run spends (1/N for a shard
    #: of N). Its siblings spend the rest: their traffic is expected, not "other traffic".
    share: float = 1.0
    #: The window's length, once two resets have been seen (else the longest wait seen).
    window_s: float = 0.0
    #: The budget per window, as the last response said.
    limit: int = 0
    _longest: float = 0.0
    _reset_at: float = float("-inf")
    _remaining: int = 0

    def observe(self, budget: Budget, now: float, in_flight: int = 0) -> tuple[float, float]:
        """Learn from one response; return `(rate per second, hold until)` (`now`: no hold)."""
        reset_at = now + budget.reset_in_s
        tolerance = 0.1 + 0.05 * max(self.window_s, self._longest)
        if reset_at > self._reset_at + tolerance:
            if self._reset_at > float("-inf"):
                step = reset_at - self._reset_at
                self.window_s = min(self.window_s, step) if self.window_s else step
            self._reset_at, self._remaining = reset_at, budget.remaining
        elif reset_at >= self._reset_at - tolerance:
            # The same window: answers may arrive out of order, the lowest is the latest.
            self._remaining = min(self._remaining, budget.remaining)
        self.limit = budget.limit
        self._longest = max(self._longest, budget.reset_in_s)
        window = self.window_s or self._longest
        steady = budget.limit * (1 - self.headroom) * self.share / max(window, 1e-3)
        spare = (self._remaining - budget.limit * self.headroom) * self.share - in_flight
        left = self._reset_at - now
        if spare < 1 and left > 0:
            return steady, self._reset_at
        rate = spare / max(left, 1e-3)
        return round(min(max(rate, steady / 4), steady * 3), 6), now


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
