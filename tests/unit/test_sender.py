"""The sender: retries, 429s and auth, over httpx.MockTransport with a clock that never sleeps."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from backfill.config import Rate
from backfill.errors import AuthError, Transient
from backfill.models import Event, EventKind, Status
from backfill.ratelimit import Backoff
from backfill.sender import MAX_RATE_LIMIT_WAITS, Sender, SendOptions


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # let other senders run, as a real sleep would


EVENT = Event(
    "ns_1", EventKind.CUSTOMER, {"title": "t"}, "h", "in.csv", "2", "2024-01-01T00:00:00.000Z"
)
EVENT_2 = Event(
    "ns_2", EventKind.CUSTOMER, {"title": "u"}, "h", "in.csv", "3", "2024-01-01T00:00:00.000Z"
)
CREATED = {
    "data": {
        "createCustomerEvent": {
            "customerEvent": {"id": "tev_1", "customerId": "c_1"},
            "error": None,
        }
    }
}


def sender_with(answers, *, max_retries=3, rate=10.0, notices=None, **options):
    """A sender whose server answers from `answers` in turn and records requests.

    An answer is (status, body[, headers]), an exception to raise, or a function of the
    request returning one of those.
    """
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if callable(answer) and not isinstance(answer, Exception):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        status, body, *headers = answer
        return httpx.Response(status, json=body, headers=headers[0] if headers else None)

    clock = FakeClock()
    sender = Sender(
        url="http://plain.test/graphql/v1",
        api_key="k",
        options=SendOptions(
            Rate(rate), max_retries=max_retries, backoff=Backoff(0.5, 4.0), **options
        ),
        clock=clock,
        transport=httpx.MockTransport(handler),
        notice=notices.append if notices is not None else None,
    )
    return sender, seen, clock


async def test_delivered_first_time():
    sender, seen, _ = sender_with([(200, CREATED)])
    sent = await sender.send(EVENT)
    await sender.aclose()
    assert sent.outcome.status == Status.DELIVERED and sent.outcome.plain_event_id == "tev_1"
    assert sent.stop is None and len(sent.attempts) == 1
    request = json.loads(seen[0].content)
    assert request["variables"] == {"input": {"title": "t"}}
    assert seen[0].headers["authorization"] == "Bearer k"


async def test_transient_failures_are_retried_with_backoff_then_retryable():
    # Alone, a row's failures in a row may be an outage: the breaker opens after five, its
    # probe is answered, and the row's trial fails too: it is the row, which gives up.
    def answered_probe(request: httpx.Request):
        assert json.loads(request.content)["operationName"] == "preflight"
        return 200, {"data": {"myWorkspace": {"id": "w", "name": "W"}}}

    answers = [(500, {})] * 5 + [answered_probe, (500, {})]
    sender, seen, clock = sender_with(answers, max_retries=3)
    sent = await sender.send(EVENT)
    await sender.aclose()
    assert sent.outcome.status == Status.RETRYABLE and sent.outcome.attempts == 6
    assert len(seen) == 7
    backoffs = [s for s in clock.slept if s > 0.11]
    assert 0.25 <= backoffs[0] <= 0.5 and 1.0 <= backoffs[2] <= 2.0


async def test_with_no_retries_a_lone_failure_gives_up_at_once():
    sender, seen, _ = sender_with([(500, {})], max_retries=0)
    sent = await sender.send(EVENT)
    await sender.aclose()
    assert sent.outcome.status == Status.RETRYABLE and len(seen) == 1


async def test_other_requests_failing_too_keep_a_row_from_giving_up_before_the_breaker_decides():
    # Two rows at once, four failures in a row: each row is past max_retries=1, but the
    # other's failures say it may be an outage starting, so they wait and are delivered.
    answers = [(500, {})] * 4 + [(200, CREATED)] * 2
    sender, seen, _ = sender_with(answers, max_retries=1)
    first, second = await asyncio.gather(sender.send(EVENT), sender.send(EVENT_2))
    await sender.aclose()
    assert first.outcome.status == second.outcome.status == Status.DELIVERED
    assert len(seen) == 6


async def test_dropped_connections_and_timeouts_are_transient():
    answers = [httpx.RemoteProtocolError("dropped"), httpx.ReadTimeout("slow"), (200, CREATED)]
    sender, _, _ = sender_with(answers)
    sent = await sender.send(EVENT)
    await sender.aclose()
    assert sent.outcome.status == Status.DELIVERED and sent.outcome.attempts == 3
    assert [a.code for a in sent.attempts] == ["CONNECTION_ERROR", "TIMEOUT", ""]


async def test_validation_errors_are_not_retried():
    error = {"message": "bad", "extensions": {"code": "BAD_USER_INPUT"}}
    sender, seen, _ = sender_with([(400, {"errors": [error]})])
    sent = await sender.send(EVENT)
    await sender.aclose()
    assert sent.outcome.status == Status.REJECTED and sent.outcome.code == "BAD_USER_INPUT"
    assert len(seen) == 1


async def test_a_429_waits_for_the_reset_and_is_not_a_failed_attempt():
    headers = {
        "x-ratelimit-reset": "2026-01-06T15:30:10.000Z",
        "date": "Tue, 06 Jan 2026 15:30:00 GMT",
    }
    answers = [(429, {"errors": []}, headers)] * 3 + [(200, CREATED)]
    sender, seen, clock = sender_with(answers, max_retries=0)
    sent = await sender.send(EVENT)
    await sender.aclose()
    assert sent.outcome.status == Status.DELIVERED
    assert sender.rate_limited == 3 and len(seen) == 4
    assert sum(1 for s in clock.slept if s >= 10.0) == 3  # every retry waited for the reset


async def test_a_429_that_never_ends_leaves_the_event_retryable():
    answers = [(429, {}, {"retry-after": "0"})] * MAX_RATE_LIMIT_WAITS
    sender, seen, _ = sender_with(answers, max_retries=0)
    sent = await sender.send(EVENT)
    await sender.aclose()
    assert sent.outcome.status == Status.RETRYABLE and len(seen) == MAX_RATE_LIMIT_WAITS


async def test_an_auth_failure_stops_the_run_and_leaves_the_event_retryable():
    error = {"message": "no", "extensions": {"code": "UNAUTHENTICATED"}}
    sender, seen, _ = sender_with([(401, {"errors": [error]})])
    sent = await sender.send(EVENT)
    await sender.aclose()
    assert isinstance(sent.stop, AuthError)
    assert sent.outcome.status == Status.RETRYABLE and len(sent.attempts) == 1
    assert "k" not in str(sent.stop).split()


async def test_requests_are_paced_at_the_rate():
    sender, _, clock = sender_with([(200, CREATED)] * 5, rate=2.0)
    start = clock.now
    for _ in range(5):
        await sender.send(EVENT)
    await sender.aclose()
    assert clock.now - start == pytest.approx(2.0)  # 5 requests at 2/s: 4 gaps of 0.5 s


async def test_preflight_reads_workspace_and_permissions():
    data = {
        "data": {
            "myWorkspace": {"id": "w_1", "name": "Acme"},
            "myPermissions": {"permissions": ["customerEvent:create"]},
        }
    }
    sender, _, _ = sender_with([(500, {}), (200, data)])
    workspace = await sender.preflight()
    await sender.aclose()
    assert (workspace.id, workspace.name) == ("w_1", "Acme")
    assert workspace.permissions == {"customerEvent:create"}


async def test_preflight_gives_up_when_plain_does_not_answer():
    sender, _, _ = sender_with([httpx.ConnectError("refused")] * 3, max_retries=2)
    with pytest.raises(Transient):
        await sender.preflight()
    await sender.aclose()


async def test_preflight_with_a_bad_key_raises_auth_error():
    sender, seen, _ = sender_with(
        [(401, {"errors": [{"message": "no", "extensions": {"code": "UNAUTHENTICATED"}}]})]
    )
    with pytest.raises(AuthError):
        await sender.preflight()
    await sender.aclose()
    assert len(seen) == 1


async def test_a_window_spent_holds_every_sender_until_the_reset_even_at_a_given_rate():
    spent = {
        "x-ratelimit-limit": "100",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "2026-01-06T15:30:10.000Z",
        "date": "Tue, 06 Jan 2026 15:30:00 GMT",
    }
    sender, seen, clock = sender_with([(200, CREATED, spent), (200, CREATED)], rate=100.0)
    await sender.send(EVENT)
    before = clock.now
    await sender.send(EVENT_2)
    await sender.aclose()
    # The second request waited for the reset (about 10 s on the server's clock) and no 429.
    assert clock.now - before >= 9.9 and sender.rate_limited == 0 and len(seen) == 2
