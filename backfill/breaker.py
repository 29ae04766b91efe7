"""The outage breaker: transient failures in a row pause sending and probe (pure, clock passed in).

One breaker is shared by every sender. A streak of `threshold` transient failures
(5xx, timeouts, dropped connections) with no answer in between opens it: senders stop
spending their retries and wait, one probe request goes out at a growing interval,
and the first answer of any kind (even a 429 or a rejection) closes it again. An
outage that has lasted `limit_s` since its first failure is final: the run stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_THRESHOLD: Final = 5
DEFAULT_OUTAGE_LIMIT_S: Final = 600.0


@dataclass(slots=True)
class Breaker:
    """Shared state of Plain's reachability.

    >>> breaker = Breaker(threshold=2, limit_s=60.0)
    >>> breaker.failed(now=0.0); breaker.failed(now=1.0)
    >>> breaker.is_open, breaker.permit(now=1.5), breaker.permit(now=2.0)
    (True, (0.5, False), (0.0, True))
    >>> breaker.answered(now=2.1); breaker.is_open
    False
    """

    threshold: int = DEFAULT_THRESHOLD
    limit_s: float = DEFAULT_OUTAGE_LIMIT_S
    first_probe_s: float = 1.0
    max_probe_s: float = 30.0
    #: Transient failures since the last answer.
    streak: int = 0
    #: When the current streak's first failure happened.
    streak_since: float = 0.0
    is_open: bool = False
    #: Outages seen so far (for the summary).
    outages: int = 0
    _interval: float = 0.0
    _next_probe: float = 0.0
    _probing: bool = False

    def permit(self, now: float) -> tuple[float, bool]:
        """May a request go out now? `(0, is_probe)` if so, else `(seconds to wait, False)`."""
        if not self.is_open:
            return 0.0, False
        if self._probing:
            # The probe is out: ask again shortly (its answer decides).
            return min(1.0, self._interval), False
        if now >= self._next_probe:
            self._probing = True
            return 0.0, True
        return self._next_probe - now, False

    def answered(self, now: float) -> None:
        """Plain answered (anything at all): the outage, if any, is over."""
        self.streak = 0
        self.is_open = False
        self._probing = False

    def failed(self, now: float, *, probe: bool = False) -> None:
        """A request got no answer (or a 5xx). `probe`: it was the breaker's probe."""
        if self.streak == 0:
            self.streak_since = now
        self.streak += 1
        if self.is_open:
            if probe:
                self._probing = False
                self._interval = min(self.max_probe_s, self._interval * 2)
                self._next_probe = now + self._interval
        elif self.streak >= self.threshold:
            self.is_open = True
            self.outages += 1
            self._interval = self.first_probe_s
            self._next_probe = now + self._interval

    def expired(self, now: float) -> bool:
        """Has the outage lasted `limit_s` (counted from its first failure)?"""
        return self.is_open and now - self.streak_since >= self.limit_s

    def down_for(self, now: float) -> float:
        """Seconds since the current outage's first failure (0 when Plain answers)."""
        return now - self.streak_since if self.streak else 0.0
