"""Plain's rate limit as the fake enforces it: fixed windows per workspace, with headers.

Each workspace (so every key of it) has a budget of units per window; windows start when
the server starts serving. Every answer past authentication carries Plain's
``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset`` headers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from backfill.fakeplain.ids import iso_millis
from backfill.fakeplain.stats import Counters

DEFAULT_RATE_LIMIT: Final = 450
DEFAULT_WINDOW_S: Final = 60.0


@dataclass(slots=True)
class _Window:
    """One workspace's current rate-limit window: budget units spent and requests admitted."""

    index: int
    units: int = 0
    requests: int = 0


class RateLimit:
    """``limit`` units per window of ``window_s`` seconds for each workspace.

    Callers hold ``FakePlain``'s lock.
    """

    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 1:
            raise ValueError(f"rate_limit must be >= 1, got {limit}")
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self._limit = limit
        self._window_s = window_s
        self._windows: dict[str, _Window] = {}
        self._epoch = time.monotonic()
        self._wall_epoch = time.time()

    def align(self) -> None:
        """Start the current window now."""
        self._epoch = time.monotonic()
        self._wall_epoch = time.time()

    def reset(self) -> None:
        """Forget what every workspace has spent."""
        self._windows = {}

    def admit(
        self, workspace_id: str, now: float, cost: int, counters: Counters
    ) -> tuple[bool, dict[str, str]]:
        """Spend `cost` units of the workspace's window if that many remain.

        Returns whether they were spent, and the rate-limit headers of the answer.
        """
        index = int((now - self._epoch) // self._window_s)
        window = self._windows.get(workspace_id)
        if window is None or window.index != index:
            window = self._windows[workspace_id] = _Window(index)
        admitted = window.units + cost <= self._limit
        if admitted:
            window.units += cost
            window.requests += 1
            counters.max_requests_in_window = max(counters.max_requests_in_window, window.requests)
            key = str(index)
            counters.admitted_per_window[key] = counters.admitted_per_window.get(key, 0) + 1
        reset_at = datetime.fromtimestamp(self._wall_epoch + (index + 1) * self._window_s, UTC)
        headers = {
            "x-ratelimit-limit": str(self._limit),
            "x-ratelimit-remaining": str(self._limit - window.units),
            "x-ratelimit-reset": iso_millis(reset_at),
        }
        return admitted, headers
