"""The outage breaker: transient failures in a row pause sending and probe (pure, clock passed in).

One breaker is shared by every sender. A streak of `threshold` transient failures
(5xx, timeouts, dropped connections) with no answer in between opens it: senders stop
spending their retries and wait. A probe (a cheap query, no row's attempt) goes out at
a growing interval; once Plain answers it, one row's request goes out as a trial, and
only an answer to that closes the breaker (Plain may answer queries while every write
fails). An outage that has lasted `limit_s` since its first failure is final: the run
stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

DEFAULT_THRESHOLD: Final = 5
DEFAULT_OUTAGE_LIMIT_S: Final = 600.0

#: What a sender may do now: send as usual, send the probe, send its row as the trial, wait.
Permit = Literal["send", "probe", "trial", "wait"]


@dataclass(slots=True)
class Breaker:
    """Shared state of Plain's reachability.

    >>> breaker = Breaker(threshold=2, limit_s=60.0)
    >>> breaker.failed(now=0.0); breaker.failed(now=1.0)
    >>> breaker.is_open, breaker.permit(now=1.5), breaker.permit(now=2.0)
    (True, ('wait', 0.5), ('probe', 0.0))
    >>> breaker.probe_answered(); breaker.permit(now=2.1)
    ('trial', 0.0)
    >>> breaker.answered(); breaker.is_open
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
    _trial_ready: bool = False
    _trial_out: bool = False

    def permit(self, now: float) -> tuple[Permit, float]:
        """What a sender may do now, and how long to wait before asking again if nothing."""
        if not self.is_open:
            return "send", 0.0
        if self._trial_ready and not self._trial_out:
            self._trial_out = True
            return "trial", 0.0
        if self._probing or self._trial_out:
            # The probe or the trial is out: its answer decides.
            return "wait", min(1.0, self._interval)
        if now >= self._next_probe:
            self._probing = True
            return "probe", 0.0
        return "wait", self._next_probe - now

    def probe_answered(self) -> None:
        """Plain answered the probe: one row's request may go out as the trial."""
        self._probing = False
        self._trial_ready = True

    def answered(self) -> None:
        """Plain answered a row's request (anything at all): the outage, if any, is over."""
        self.streak = 0
        self.is_open = False
        self._probing = self._trial_ready = self._trial_out = False

    def failed(self, now: float, *, probe: bool = False) -> None:
        """A request got no answer (or a 5xx). `probe`: it was the probe or the trial."""
        if self.streak == 0:
            self.streak_since = now
        self.streak += 1
        if self.is_open:
            if probe:
                self._probing = self._trial_ready = self._trial_out = False
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
