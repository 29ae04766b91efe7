"""Fault injection: 500s, dropped connections, lost answers, latency and outages.

Faults are drawn from a seeded random, so the same requests with the same seed meet the
same faults.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, fields


@dataclass(slots=True)
class Faults:
    """Failures to inject into the GraphQL endpoint (admin paths are never affected).

    ``error_500``, ``drop`` and ``applied_then_drop`` are probabilities for each request
    whose operation is a mutation; the request draws once from ``random.Random(seed)``
    and the three split that draw, so their sum must not exceed 1. A fault hits the
    request as a whole: ``applied_then_drop`` applies every mutation in it, ``error_500``
    and ``drop`` none; requests refused for ``max_mutations`` draw nothing. ``fail_next``
    answers the next N mutation requests with a 500 before any draw. ``latency_ms``
    delays every answered GraphQL request by a uniform amount. ``outage_until`` is a
    ``time.monotonic()`` deadline before which every request gets a 503. Replacing a
    server's ``faults`` restarts the draws from the new seed.

    >>> Faults(error_500=0.1, drop=0.05, seed=42).applied_then_drop
    0.0
    """

    error_500: float = 0.0
    drop: float = 0.0
    applied_then_drop: float = 0.0
    latency_ms: tuple[float, float] = (0.0, 0.0)
    outage_until: float = 0.0
    fail_next: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        rates = (self.error_500, self.drop, self.applied_then_drop)
        if any(not 0.0 <= rate <= 1.0 for rate in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError(
                "fault probabilities must each be within 0..1 and sum to at most 1, "
                f"got error_500={self.error_500}, drop={self.drop}, "
                f"applied_then_drop={self.applied_then_drop}"
            )
        low, high = self.latency_ms
        if not 0.0 <= low <= high:
            raise ValueError(
                f"latency_ms must be (low, high) with 0 <= low <= high, got {low, high}"
            )
        if self.fail_next < 0:
            raise ValueError(f"fail_next must be >= 0, got {self.fail_next}")


class FaultDraws:
    """Each request's fault and latency, drawn from ``random.Random(faults.seed)``.

    The draws start again from the seed when they are given another ``Faults`` object.
    """

    def __init__(self, faults: Faults) -> None:
        self._random = random.Random(faults.seed)
        self._random_for = faults

    def fault(self, faults: Faults) -> str:
        """The fault of one mutation request: a ``Faults`` field name, or ``""`` for none."""
        if faults is not self._random_for:
            self._random = random.Random(faults.seed)
            self._random_for = faults
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return "error_500"
        roll = self._random.random()
        for name, probability in (
            ("error_500", faults.error_500),
            ("drop", faults.drop),
            ("applied_then_drop", faults.applied_then_drop),
        ):
            if roll < probability:
                return name
            roll -= probability
        return ""

    def latency_s(self, faults: Faults) -> float:
        """The delay of one answered request, in seconds."""
        low, high = faults.latency_ms
        return self._random.uniform(low, high) / 1000 if high > 0 else 0.0


def faults_from_json(body: bytes) -> Faults:
    """The ``Faults`` a ``POST /_fake/faults`` body names; ``outage_s`` starts an outage now.

    Raises ``ValueError`` or ``TypeError`` for a body that names no valid faults.

    >>> faults_from_json(b'{"drop": 0.5, "seed": 7}').drop
    0.5
    """
    values = json.loads(body or b"{}")
    if not isinstance(values, dict):
        raise ValueError("expected a JSON object of Faults fields")
    allowed = {item.name for item in fields(Faults)} | {"outage_s"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
    outage_s = values.pop("outage_s", None)
    if outage_s is not None:
        values["outage_until"] = time.monotonic() + float(outage_s)
    if "latency_ms" in values:
        low, high = values["latency_ms"]
        values["latency_ms"] = (float(low), float(high))
    return Faults(**values)
