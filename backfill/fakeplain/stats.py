"""What the fake Plain counts: requests, refusals, faults and the events it created."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of what the server received and did since it started or was last reset.

    ``creations`` and ``create_attempts`` are keyed by the event's ``externalId`` (``""``
    when none was given); in a correct run every ``creations`` value is 1.
    ``max_requests_in_window`` counts requests, whatever each cost. ``mutations`` counts
    top-level mutation fields in requests answered with a 200; ``max_mutations_in_request``
    is the most in one admitted request, including refused and faulted ones.
    ``refused_documents`` counts requests refused for exceeding ``max_mutations``.
    ``admitted_per_window`` counts admitted requests by rate-limit window (its index since
    the server started, as text), for measuring how much of a budget a client used.
    """

    requests: int
    by_operation: dict[str, int]
    creations: dict[str, int]
    create_attempts: dict[str, int]
    rate_limited: int
    unauthenticated: int
    unavailable: int
    errors_500: int
    drops: int
    applied_then_drops: int
    max_requests_in_window: int
    refused_documents: int
    mutations: int
    max_mutations_in_request: int
    admitted_per_window: dict[str, int]
    events: list[dict[str, Any]]


@dataclass(slots=True)
class Counters:
    """What the server received and did, as it counts; read through ``snapshot()``."""

    requests: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)
    creations: dict[str, int] = field(default_factory=dict)
    create_attempts: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    unauthenticated: int = 0
    unavailable: int = 0
    errors_500: int = 0
    drops: int = 0
    applied_then_drops: int = 0
    max_requests_in_window: int = 0
    refused_documents: int = 0
    mutations: int = 0
    max_mutations_in_request: int = 0
    admitted_per_window: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def snapshot(self) -> Stats:
        """A copy that later requests do not change."""
        return Stats(
            requests=self.requests,
            by_operation=dict(self.by_operation),
            creations=dict(self.creations),
            create_attempts=dict(self.create_attempts),
            rate_limited=self.rate_limited,
            unauthenticated=self.unauthenticated,
            unavailable=self.unavailable,
            errors_500=self.errors_500,
            drops=self.drops,
            applied_then_drops=self.applied_then_drops,
            max_requests_in_window=self.max_requests_in_window,
            refused_documents=self.refused_documents,
            mutations=self.mutations,
            max_mutations_in_request=self.max_mutations_in_request,
            admitted_per_window=dict(self.admitted_per_window),
            events=[dict(event) for event in self.events],
        )
