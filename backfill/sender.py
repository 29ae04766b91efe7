"""Sending to Plain over async httpx: pacing, retries and error classes (the only HTTP code)."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from backfill import plain
from backfill.breaker import DEFAULT_OUTAGE_LIMIT_S, Breaker
from backfill.config import Rate
from backfill.errors import AuthError, ConfigError, PlainError, Transient, Unreachable
from backfill.models import Attempt, Clock, Event, Outcome, Status, SystemClock, Workspace
from backfill.plain import Answer
from backfill.ratelimit import AutoRate, Backoff, Pacer

log = logging.getLogger(__name__)

#: A row that meets this many 429s in a row is left `retryable` rather than waiting forever.
MAX_RATE_LIMIT_WAITS: Final = 100
#: A request of several events refused with 429 after this many resets in a row is split.
LIMITED_BEFORE_SPLIT: Final = 3
USER_AGENT: Final = "plain-backfill"
#: Waits for a window's reset end this much after it, for the clocks' disagreement.
RESET_MARGIN_S: Final = 0.05
#: The shortest hold after a 429.
MIN_HOLD_S: Final = 0.25
#: A sender claims a pacing slot at most this far ahead, so a faster rate (a new window
#: under `--rate auto`) applies at once instead of after slots taken at the slow one.
PACE_HORIZON_S: Final = 0.25
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
    stop: PlainError | None = None


@dataclass(frozen=True, slots=True)
class SendOptions:
    """How the sender paces and retries."""

    #: The budget, and this sender's share of it (1/N for a shard of N). Under `auto` the
    #: headroom comes off the workspace's learnt budget once, and the share of the rest is
    #: spent.
    rate: Rate
    max_retries: int = 5
    timeout_s: float = 30.0
    concurrency: int = 4
    backoff: Backoff = field(default_factory=Backoff)
    events_per_request: int = 1
    outage_limit_s: float = DEFAULT_OUTAGE_LIMIT_S


class Sender:
    """Sends events to one Plain endpoint, sharing one rate budget across all callers.

    >>> sender = Sender(url=url, api_key=key, options=SendOptions(Rate(7.5)))  # doctest: +SKIP
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
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.options = options
        rate = options.rate
        self.pacer = Pacer(rate.pace_per_s)
        #: With `--rate auto`: the learner that sets the pacer's rate from Plain's headers.
        self.auto = AutoRate(headroom=rate.headroom, share=rate.share) if rate.auto else None
        self._in_flight = 0
        self.breaker = Breaker(limit_s=options.outage_limit_s)
        #: Events per request now: starts at the option, lowered when Plain refuses larger ones.
        self.events_per_request = options.events_per_request
        #: What lowered `events_per_request`, for the summary.
        self.fallbacks: list[str] = []
        self.requests = 0
        self.rate_limited = 0
        self._notice = notice or (lambda text: log.warning("%s", text))
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
        """Send one event until it has a final outcome (or the run must stop)."""
        return (await self.send_many([event]))[0]

    async def send_many(
        self,
        events: Sequence[Event],
        *,
        stopping: Callable[[], bool] | None = None,
        settled: Callable[[int, Sent], None] | None = None,
    ) -> list[Sent]:
        """Send events, up to `events_per_request` in one request, each to its own outcome.

        A document refused as a whole (validation, size, complexity) lowers
        `events_per_request` for the rest of the run; a request refused for one bad
        variable is split in halves until the bad event stands alone. Once `stopping()`
        says so, nothing more is sent: what has no answer yet is `retryable`. `settled`
        hears of each event's outcome as soon as it is final (by its index).
        """

        def body(unit: Sequence[int]) -> dict[str, Any]:
            if len(unit) == 1:
                return plain.event_body(events[unit[0]])
            return plain.batch_body([events[n] for n in unit])

        def classify(
            unit: Sequence[int], status: int, headers: httpx.Headers, content: bytes
        ) -> Answer | list[Answer]:
            if len(unit) > 1:
                return plain.classify_batch(
                    status, headers, content, [events[n].kind for n in unit]
                )
            result = plain.classify_http(status, headers, content)
            return (
                plain.classify_event(result, events[unit[0]].kind)
                if isinstance(result, dict)
                else result
            )

        return await self._until_final(
            [event.external_id for event in events],
            body,
            classify,
            split=True,
            stopping=stopping,
            settled=settled,
        )

    async def upsert(self, customer: str, upsert: Mapping[str, Any]) -> Sent:
        """Upsert one customer (`customer` is its `field:value` key, for logs and attempts)."""

        def classify(
            unit: Sequence[int], status: int, headers: httpx.Headers, content: bytes
        ) -> Answer:
            result = plain.classify_http(status, headers, content)
            return plain.classify_upsert(result) if isinstance(result, dict) else result

        sent = await self._until_final(
            [customer], lambda unit: plain.upsert_body(upsert), classify, split=False
        )
        return sent[0]

    async def _until_final(
        self,
        labels: Sequence[str],
        body: Callable[[Sequence[int]], Mapping[str, Any]],
        classify: Callable[[Sequence[int], int, httpx.Headers, bytes], Answer | list[Answer]],
        *,
        split: bool,
        stopping: Callable[[], bool] | None = None,
        settled: Callable[[int, Sent], None] | None = None,
    ) -> list[Sent]:
        """Send items (by index) in requests of up to `events_per_request` until each is final."""
        count = len(labels)
        attempts: list[list[Attempt]] = [[] for _ in range(count)]
        failures = [0] * count
        results: list[Sent | None] = [None] * count
        size = self.events_per_request if split else 1
        units = deque(_chunks(list(range(count)), size))
        waits = limited_in_a_row = 0

        def settle(unit: Iterable[int], answer: Answer, stop: PlainError | None = None) -> None:
            for n in unit:
                status = _FINAL.get(answer.kind, Status.RETRYABLE)
                sent = Sent(_outcome(status, answer, attempts[n]), attempts[n], stop)
                results[n] = sent
                if settled is not None:
                    settled(n, sent)

        while units:
            if stopping is not None and stopping():
                # The run is stopping: no new request, no retry; the next run sends these.
                stopped = Answer("transient", "STOPPED", "the run stopped before an answer")
                for n in (n for left in units for n in left):
                    tried = attempts[n][-1] if attempts[n] else None
                    settle(
                        [n], Answer("transient", tried.code, tried.message) if tried else stopped
                    )
                break
            unit = units.popleft()
            trial, unreachable = await self._admit()
            if unreachable is not None:
                answer = Answer("transient", unreachable.code, str(unreachable))
                settle([*unit, *(n for left in units for n in left)], answer, unreachable)
                break
            sent = time.time()
            status, reply = await self._request(
                body(unit), functools.partial(classify, unit), trial=trial
            )
            answered = time.time()
            answers = reply if isinstance(reply, list) else [reply] * len(unit)
            for n, answer in zip(unit, answers, strict=True):
                attempts[n].append(
                    Attempt(
                        labels[n],
                        len(attempts[n]) + 1,
                        answer.kind,
                        sent,
                        answered,
                        status,
                        answer.code,
                        answer.message[:500],
                    )
                )
            if isinstance(reply, Answer) and reply.kind == "rejected" and len(unit) > 1:
                units.extendleft(reversed(self._split(unit, reply)))
                continue
            retry: list[int] = []
            stop: PlainError | None = None
            limited: Answer | None = None
            for n, answer in zip(unit, answers, strict=True):
                if answer.kind in _FINAL:
                    settle([n], answer)
                elif answer.kind == "auth":
                    # Not the item's fault: it stays retryable and the run stops.
                    stop = AuthError(
                        f"Plain refused the request for {labels[n]} ({answer.code}: "
                        f"{answer.message}); stopping: every further request would fail the "
                        "same way",
                        code=answer.code,
                    )
                    settle([n], answer, stop)
                elif answer.kind == "rate_limited":
                    limited = answer
                    retry.append(n)
                elif self.breaker.is_open and not trial:
                    # An outage is not the item's fault: it keeps its retries.
                    retry.append(n)
                else:
                    # A failed trial counts: Plain answered the probe, so it may be the item.
                    failures[n] += 1
                    # Failures in a row with no answer from Plain in between may be an
                    # outage starting: the breaker decides before the item gives up.
                    suspect = not trial and self.breaker.streak >= max(2, failures[n])
                    if failures[n] > self.options.max_retries and not suspect:
                        settle([n], answer)
                    else:
                        retry.append(n)
            if stop is not None:
                last = Answer("auth", stop.code, str(stop))
                settle([*retry, *(n for left in units for n in left)], last, stop)
                break
            if not retry:
                continue
            limited_in_a_row = limited_in_a_row + 1 if limited is not None else 0
            if limited is not None:
                self.rate_limited += 1
                waits += 1
                self._hold(limited.wait_s)
                if waits >= MAX_RATE_LIMIT_WAITS:
                    settle([*retry, *(n for left in units for n in left)], limited)
                    break
                if len(retry) > 1 and limited_in_a_row >= LIMITED_BEFORE_SPLIT:
                    # Refused after every reset: Plain may count each event against the
                    # limit, and K of them may be more than a window allows.
                    refusal = Answer(
                        "rejected",
                        "RATE_LIMITED",
                        f"refused with 429 after {limited_in_a_row} resets in a row; Plain "
                        "may count each event of a request against its rate limit",
                    )
                    units.extendleft(reversed(self._split(retry, refusal)))
                    limited_in_a_row = 0
                    continue
            elif not self.breaker.is_open:
                tries = max(failures[n] for n in retry)
                delay = self.options.backoff.delay(tries, self._rand)
                log.info(
                    "retrying %s in %.1fs after %s (%s)",
                    labels[retry[0]] if len(retry) == 1 else f"{len(retry)} events",
                    delay,
                    answers[unit.index(retry[0])].code,
                    tries,
                )
                await self._clock.sleep(delay)
            units.appendleft(retry)
        return [sent for sent in results if sent is not None]

    def _split(self, unit: list[int], refusal: Answer) -> list[list[int]]:
        """Split a multi-event request Plain refused as a whole."""
        if refusal.code == "BAD_USER_INPUT":
            # One bad variable spoils the document: halves isolate it.
            half = (len(unit) + 1) // 2
            return [unit[:half], unit[half:]]
        # The document itself is refused (validation, size, complexity): send fewer per request.
        smaller = min(max(1, len(unit) // 2), self.events_per_request)
        if smaller < self.events_per_request:
            message = (
                f"Plain refused a request of {len(unit)} events ({refusal.code}: "
                f"{refusal.message[:200]}); sending at most {smaller} per request from now on"
            )
            self.fallbacks.append(message)
            self._notice(message)
            self.events_per_request = smaller
        return _chunks(unit, smaller)

    async def _admit(self) -> tuple[bool, Unreachable | None]:
        """Wait for the outage breaker and the pacer: `(is_trial, None)`, or the final outage."""
        while True:
            now = self._clock.monotonic()
            if self.breaker.expired(now):
                return False, Unreachable(
                    f"Plain has not answered for {self.breaker.down_for(now):.0f}s (the outage "
                    f"limit is {self.breaker.limit_s:.0f}s); stopping, unsent rows stay retryable",
                    code="UNREACHABLE",
                )
            permit, wait = self.breaker.permit(now)
            if permit == "probe":
                await self._probe()
            elif permit == "wait":
                await self._clock.sleep(min(wait, 1.0))
            else:
                await self._pace()
                return permit == "trial", None

    async def _probe(self) -> None:
        """Ask Plain something cheap (the preflight query): no row spends an attempt on it."""
        await self._pace()
        try:
            status, _, _ = await self._post(plain.preflight_body())
        except Transient:
            status = None
        if status is None or status >= 500:
            self.breaker.failed(self._clock.monotonic(), probe=True)
            log.info("probe: Plain is still not answering (%s)", status or "no answer")
        else:
            self.breaker.probe_answered()
            log.info("probe: Plain answers (HTTP %s); one request goes out as a trial", status)

    async def _request(
        self,
        body: Mapping[str, Any],
        classify: Callable[[int, httpx.Headers, bytes], Answer | list[Answer]],
        *,
        trial: bool,
    ) -> tuple[int | None, Answer | list[Answer]]:
        """One request; the outage breaker learns whether Plain answered."""
        was_open = self.breaker.is_open
        try:
            status, headers, content = await self._post(body)
        except Transient as exc:
            self.breaker.failed(self._clock.monotonic(), probe=trial)
            self._outage_news(was_open)
            return None, Answer("transient", exc.code, str(exc))
        reply = classify(status, headers, content)
        if isinstance(reply, Answer) and reply.kind == "transient" and status >= 500:
            self.breaker.failed(self._clock.monotonic(), probe=trial)
        else:
            self.breaker.answered()
        self._outage_news(was_open)
        return status, reply

    def _outage_news(self, was_open: bool) -> None:
        if self.breaker.is_open and not was_open:
            self._notice(
                f"Plain is not answering ({self.breaker.streak} failures in a row): pausing, "
                f"probing at growing intervals for up to {self.breaker.limit_s:.0f}s"
            )
        elif was_open and not self.breaker.is_open:
            self._notice("Plain answers again: resuming")

    def _hold(self, wait_s: float) -> None:
        # A reset already past (a wrong header) must not become a tight loop of 429s.
        wait_s = max(wait_s, MIN_HOLD_S)
        # A 429 holds every sender until the window resets, not only the one that saw it.
        self.pacer.pause_until(self._clock.monotonic() + wait_s + RESET_MARGIN_S)
        log.info("rate limited: holding every request for %.2fs", wait_s)

    async def _pace(self) -> None:
        while True:
            now = self._clock.monotonic()
            delay = self.pacer.claim(now, horizon=PACE_HORIZON_S)
            if delay is None:
                # No slot near enough: wait for the hold to end, or for a faster rate.
                await self._clock.sleep(max(self.pacer.held_until - now, PACE_HORIZON_S))
                continue
            if delay > 0:
                await self._clock.sleep(delay)
            # A 429 seen while this sender slept holds it too: take a new slot after the hold.
            if self.pacer.held_until <= self._clock.monotonic():
                return

    async def _post(self, body: Mapping[str, Any]) -> tuple[int, httpx.Headers, bytes]:
        self.requests += 1
        self._in_flight += 1
        try:
            response = await self._client.post(self.url, json=body)
        except httpx.TimeoutException:
            raise Transient("the request timed out", code="TIMEOUT") from None
        except httpx.TransportError as exc:
            raise Transient(
                f"connection failed: {type(exc).__name__}", code="CONNECTION_ERROR"
            ) from None
        finally:
            self._in_flight -= 1
        if response.status_code != 429:
            self._learn(response.headers)
        return response.status_code, response.headers, response.content

    def _learn(self, headers: httpx.Headers) -> None:
        """Pace by what Plain says is left of its window.

        With `--rate auto` that sets the rate. With a given rate, a window already spent
        (other traffic, or requests late from the last window crowding this one) holds
        every sender until the reset instead of earning a 429.
        """
        budget = plain.read_budget(headers)
        if budget is None:
            return
        now = self._clock.monotonic()
        if self.auto is None:
            if budget.remaining <= 0:
                self.pacer.pause_until(now + budget.reset_in_s + RESET_MARGIN_S)
            return
        rate, hold_until = self.auto.observe(budget, now, self._in_flight)
        if rate != self.pacer.rate:
            self.pacer.set_rate(rate)
        if hold_until > now:
            # This run's share of the window is spent: every sender waits for the reset.
            self.pacer.pause_until(hold_until + RESET_MARGIN_S)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[n : n + size] for n in range(0, len(items), size)]


def _outcome(status: Status, answer: Answer, attempts: list[Attempt]) -> Outcome:
    if not attempts:  # the run stopped before the item's first request
        return Outcome(status, attempts=0, code=answer.code, message=answer.message[:1000])
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
