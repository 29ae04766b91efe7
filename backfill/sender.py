"""Sending to Plain over async httpx: pacing, retries and error classes (the only HTTP code)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from backfill import plain
from backfill.errors import AuthError, ConfigError, Transient
from backfill.models import Attempt, Clock, Event, Outcome, Status, SystemClock, Workspace
from backfill.plain import Answer
from backfill.ratelimit import Backoff, Pacer

log = logging.getLogger(__name__)

#: A row that meets this many 429s in a row is left `retryable` rather than waiting forever.
MAX_RATE_LIMIT_WAITS: Final = 100
USER_AGENT: Final = "plain-backfill"
_FINAL: Final = {
    "delivered": Status.DELIVERED,
    "already_existed": Status.ALREADY_EXISTED,
    "rejected": Status.REJECTED,
}


@dataclass(frozen=True, slots=True)
class Sent:
    """What sending one event came to: its outcome, every attempt, and a run-stopping error."""

    outcome: Outcome
    attempts: list[Attempt]
    stop: AuthError | None = None


@dataclass(frozen=True, slots=True)
class SendOptions:
    """How the sender paces and retries."""

    rate_per_s: float
    max_retries: int = 5
    timeout_s: float = 30.0
    concurrency: int = 4
    backoff: Backoff = field(default_factory=Backoff)


class Sender:
    """Sends events to one Plain endpoint, sharing one rate budget across all callers.

    >>> sender = Sender(url=url, api_key=key, options=SendOptions(rate_per_s=7.5))  # doctest: +SKIP
    >>> outcome, attempts = await sender.send(event)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        options: SendOptions,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rand: random.Random | None = None,
    ) -> None:
        self.url = url
        self.options = options
        self.pacer = Pacer(options.rate_per_s)
        self.requests = 0
        self.rate_limited = 0
        self._clock = clock or SystemClock()
        self._rand = rand or random.Random()
        self._client = httpx.AsyncClient(
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=options.timeout_s,
            limits=httpx.Limits(
                max_connections=options.concurrency, max_keepalive_connections=options.concurrency
            ),
            transport=transport,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def preflight(self) -> Workspace:
        """Check the key: which workspace it writes to and what it may do."""
        failures = 0
        waits = 0
        while True:
            await self._pace()
            try:
                status, headers, body = await self._post(plain.preflight_body())
            except Transient as exc:
                answer = Answer("transient", exc.code, str(exc))
            else:
                if status in (404, 405):
                    raise ConfigError(
                        f"{self.url} answered HTTP {status}: is it Plain's GraphQL endpoint?"
                    )
                result = plain.classify_http(status, headers, body)
                if isinstance(result, dict):
                    return plain.parse_preflight(result)
                answer = result
            if answer.kind == "auth":
                raise AuthError(
                    f"Plain refused the API key ({answer.code}: {answer.message}); check "
                    "PLAIN_API_KEY",
                    code=answer.code,
                )
            if answer.kind == "rejected":
                raise ConfigError(
                    f"the preflight query was refused: {answer.code} {answer.message}"
                )
            if answer.kind == "rate_limited":
                self.rate_limited += 1
                self._hold(answer.wait_s)
                waits += 1
                if waits < MAX_RATE_LIMIT_WAITS:
                    continue
            failures += 1
            if failures > self.options.max_retries or waits >= MAX_RATE_LIMIT_WAITS:
                raise Transient(
                    f"Plain did not answer the preflight query ({answer.code}: {answer.message})",
                    code=answer.code,
                )
            await self._clock.sleep(self.options.backoff.delay(failures, self._rand))

    async def send(self, event: Event) -> Sent:
        """Send one event until it has a final outcome (or Plain refuses the key)."""
        return await self._until_final(
            plain.event_body(event),
            lambda data: plain.classify_event(data, event.kind),
            label=event.external_id,
        )

    async def upsert(self, customer: str, upsert: Mapping[str, Any]) -> Sent:
        """Upsert one customer (`customer` is its `field:value` key, for logs and attempts)."""
        return await self._until_final(
            plain.upsert_body(upsert), plain.classify_upsert, label=customer
        )

    async def _until_final(
        self, body: Mapping[str, Any], classify: Callable[[dict[str, Any]], Answer], *, label: str
    ) -> Sent:
        attempts: list[Attempt] = []
        failures = 0
        waits = 0
        while True:
            await self._pace()
            sent = time.time()
            status: int | None = None
            try:
                status, headers, content = await self._post(body)
            except Transient as exc:
                answer = Answer("transient", exc.code, str(exc))
            else:
                result = plain.classify_http(status, headers, content)
                answer = classify(result) if isinstance(result, dict) else result
            attempts.append(
                Attempt(
                    label,
                    len(attempts) + 1,
                    answer.kind,
                    sent,
                    time.time(),
                    status,
                    answer.code,
                    answer.message[:500],
                )
            )
            final = _FINAL.get(answer.kind)
            if final is not None:
                return Sent(_outcome(final, answer, attempts), attempts)
            if answer.kind == "auth":
                # Not the event's fault: it stays retryable and the run stops.
                error = AuthError(
                    f"Plain refused the request for {label} ({answer.code}: "
                    f"{answer.message}); stopping: every further request would fail the same way",
                    code=answer.code,
                )
                return Sent(_outcome(Status.RETRYABLE, answer, attempts), attempts, error)
            if answer.kind == "rate_limited":
                self.rate_limited += 1
                waits += 1
                self._hold(answer.wait_s)
                if waits >= MAX_RATE_LIMIT_WAITS:
                    return Sent(_outcome(Status.RETRYABLE, answer, attempts), attempts)
                continue
            failures += 1
            if failures > self.options.max_retries:
                return Sent(_outcome(Status.RETRYABLE, answer, attempts), attempts)
            delay = self.options.backoff.delay(failures, self._rand)
            log.info("retrying %s in %.1fs after %s (%s)", label, delay, answer.code, failures)
            await self._clock.sleep(delay)

    def _hold(self, wait_s: float) -> None:
        # A 429 holds every sender until the window resets, not only the one that saw it.
        # A small margin covers the Date header's whole-second precision.
        self.pacer.pause_until(self._clock.monotonic() + wait_s + 0.05)
        log.info("rate limited: holding every request for %.2fs", wait_s)

    async def _pace(self) -> None:
        while True:
            delay = self.pacer.reserve(self._clock.monotonic())
            if delay > 0:
                await self._clock.sleep(delay)
            # A 429 seen while this sender slept holds it too: take a new slot after the hold.
            if self.pacer.held_until <= self._clock.monotonic():
                return

    async def _post(self, body: Mapping[str, Any]) -> tuple[int, httpx.Headers, bytes]:
        self.requests += 1
        try:
            response = await self._client.post(self.url, json=body)
        except httpx.TimeoutException:
            raise Transient("the request timed out", code="TIMEOUT") from None
        except httpx.TransportError as exc:
            raise Transient(
                f"connection failed: {type(exc).__name__}", code="CONNECTION_ERROR"
            ) from None
        return response.status_code, response.headers, response.content


def _outcome(status: Status, answer: Answer, attempts: list[Attempt]) -> Outcome:
    last = attempts[-1]
    return Outcome(
        status=status,
        attempts=len(attempts),
        plain_event_id=answer.plain_event_id,
        plain_customer_id=answer.plain_customer_id,
        code=answer.code,
        message=answer.message[:1000],
        sent_at=attempts[0].sent_at,
        answered_at=last.answered_at,
        latency_ms=last.latency_ms,
    )
