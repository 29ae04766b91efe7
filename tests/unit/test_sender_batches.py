"""Several events per request, and the outage breaker, in the sender (httpx.MockTransport)."""

from __future__ import annotations

import json

import httpx

from backfill.errors import Unreachable
from backfill.models import Event, EventKind, Status
from tests.unit.test_sender import CREATED, sender_with


def event(n: int, kind: EventKind = EventKind.CUSTOMER) -> Event:
    return Event(
        f"ns_{n}", kind, {"title": f"t{n}"}, "h", "in.csv", str(n + 2), "2024-01-01T00:00:00.000Z"
    )


EVENTS = [event(n) for n in range(5)]


def created(alias: str) -> dict:
    return {"customerEvent": {"id": f"tev_{alias}", "customerId": "c_1"}, "error": None}


def duplicate() -> dict:
    return {
        "customerEvent": None,
        "error": {
            "message": "An event with this external ID already exists.",
            "type": "VALIDATION",
            "code": "input_validation",
            "fields": [{"field": "externalId", "message": "already exists", "type": "VALIDATION"}],
        },
    }


def rejected() -> dict:
    return {
        "customerEvent": None,
        "error": {"message": "no such customer", "type": "VALIDATION", "code": "not_found"},
    }


def per_alias(outputs: dict[int, dict]):
    """A server answer: each alias of the request gets outputs[n], else a created event."""

    def answer(request: httpx.Request):
        body = json.loads(request.content)
        if "input" in body["variables"]:
            return 200, CREATED
        aliases = sorted(body["variables"], key=lambda name: int(name[1:]))
        data = {f"e{name[1:]}": outputs.get(int(name[1:]), created(name)) for name in aliases}
        return 200, {"data": data}

    return answer


def sizes(seen: list[httpx.Request]) -> list[int]:
    return [len(json.loads(request.content)["variables"]) for request in seen]


async def test_events_share_one_request_and_each_gets_its_own_outcome():
    sender, seen, _ = sender_with(
        [per_alias({1: duplicate(), 3: rejected()})], events_per_request=5
    )
    results = await sender.send_many(EVENTS)
    await sender.aclose()
    assert sizes(seen) == [5]
    body = json.loads(seen[0].content)
    assert body["operationName"] == "backfillEvents"
    assert body["variables"]["i2"] == {"title": "t2"}
    assert [r.outcome.status for r in results] == [
        Status.DELIVERED,
        Status.ALREADY_EXISTED,
        Status.DELIVERED,
        Status.REJECTED,
        Status.DELIVERED,
    ]
    assert results[0].outcome.plain_event_id == "tev_i0"
    assert results[3].outcome.code == "not_found"
    assert all(
        len(r.attempts) == 1 and r.attempts[0].external_id == e.external_id
        for r, e in zip(results, EVENTS, strict=True)
    )


async def test_more_events_than_k_go_in_several_requests():
    sender, seen, _ = sender_with([per_alias({})] * 3, events_per_request=2)
    results = await sender.send_many(EVENTS)
    await sender.aclose()
    assert sizes(seen) == [2, 2, 1]
    assert {r.outcome.status for r in results} == {Status.DELIVERED}
    # A request of one event is the ordinary single-mutation document.
    assert json.loads(seen[2].content)["operationName"] == "createCustomerEvent"


async def test_a_refused_document_lowers_k_for_the_rest_of_the_run_and_says_so():
    refusal = (
        400,
        {
            "errors": [
                {
                    "message": "Query complexity limit exceeded",
                    "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
                }
            ]
        },
    )

    def answer(request: httpx.Request):
        return (
            refusal if len(json.loads(request.content)["variables"]) > 2 else per_alias({})(request)
        )

    notices: list[str] = []
    sender, seen, _ = sender_with([answer] * 10, events_per_request=5, notices=notices)
    results = await sender.send_many(EVENTS)
    later = await sender.send_many([event(n) for n in range(10, 14)])
    await sender.aclose()
    assert sizes(seen) == [5, 2, 2, 1, 2, 2]
    assert sender.events_per_request == 2
    assert {r.outcome.status for r in results + later} == {Status.DELIVERED}
    assert len(notices) == 1 and "at most 2 per request" in notices[0]
    assert sender.fallbacks == notices
    # The refused request is in every event's attempts, as a rejection that was not final.
    assert [a.outcome for a in results[0].attempts] == ["rejected", "delivered"]


async def test_a_document_refused_even_alone_rejects_its_events():
    refusal = (
        400,
        {"errors": [{"message": "no", "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]},
    )
    sender, seen, _ = sender_with([refusal] * 4, events_per_request=2)
    results = await sender.send_many(EVENTS[:2])
    await sender.aclose()
    assert sizes(seen) == [2, 1, 1]
    assert [r.outcome.status for r in results] == [Status.REJECTED, Status.REJECTED]
    assert sender.events_per_request == 1


async def test_one_bad_variable_is_isolated_by_halving():
    bad = EVENTS[3].external_id

    def answer(request: httpx.Request):
        body = json.loads(request.content)
        inputs = body["variables"].values()
        if any(value.get("title") == "t3" for value in inputs):
            error = {
                "message": 'Variable "$i0" got invalid value',
                "extensions": {"code": "BAD_USER_INPUT"},
            }
            return 400, {"errors": [error]}
        return per_alias({})(request) if len(body["variables"]) > 1 else (200, CREATED)

    notices: list[str] = []
    sender, seen, _ = sender_with([answer] * 10, events_per_request=5, notices=notices)
    results = await sender.send_many(EVENTS)
    await sender.aclose()
    by_id = {e.external_id: r.outcome for e, r in zip(EVENTS, results, strict=True)}
    assert by_id[bad].status == Status.REJECTED and by_id[bad].code == "BAD_USER_INPUT"
    assert all(o.status == Status.DELIVERED for i, o in by_id.items() if i != bad)
    # 5 -> [3, 2]: the 3 are delivered, the 2 holding it -> [1, 1]. K stays, nothing to say.
    assert sizes(seen) == [5, 3, 2, 1, 1]
    assert sender.events_per_request == 5 and notices == []


async def test_an_alias_whose_mutation_raised_is_retried_alone():
    def first(request: httpx.Request):
        data = {"e0": created("i0"), "e1": None, "e2": created("i2")}
        error = {"message": "boom", "path": ["e1"], "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
        return 200, {"data": data, "errors": [error]}

    sender, seen, _ = sender_with([first, (200, CREATED)], events_per_request=3)
    results = await sender.send_many(EVENTS[:3])
    await sender.aclose()
    assert sizes(seen) == [3, 1]
    assert [r.outcome.status for r in results] == [Status.DELIVERED] * 3
    assert [a.code for a in results[1].attempts] == ["INTERNAL_SERVER_ERROR", ""]
    assert len(results[0].attempts) == 1


async def test_a_whole_request_failing_is_retried_whole():
    sender, seen, _ = sender_with([(500, {}), per_alias({})], events_per_request=3)
    results = await sender.send_many(EVENTS[:3])
    await sender.aclose()
    assert sizes(seen) == [3, 3]
    assert all(r.outcome.status == Status.DELIVERED and r.outcome.attempts == 2 for r in results)


async def test_thread_and_customer_events_mix_in_one_document():
    mixed = [event(0), event(1, EventKind.THREAD)]

    def answer(request: httpx.Request):
        body = json.loads(request.content)
        assert "e0: createCustomerEvent(input: $i0)" in body["query"]
        assert "e1: createThreadEvent(input: $i1)" in body["query"]
        assert "$i1: CreateThreadEventInput!" in body["query"]
        thread = {"threadEvent": {"id": "tev_t", "customerId": "c_1"}, "error": None}
        return 200, {"data": {"e0": created("i0"), "e1": thread}}

    sender, _, _ = sender_with([answer], events_per_request=2)
    results = await sender.send_many(mixed)
    await sender.aclose()
    assert [r.outcome.plain_event_id for r in results] == ["tev_i0", "tev_t"]


# --- outages ----------------------------------------------------------------------------


async def test_an_outage_pauses_and_probes_without_spending_the_rows_retries():
    down = [httpx.ConnectError("refused")] * 12
    notices: list[str] = []
    answers = [*down, (200, CREATED), (200, CREATED)]
    sender, seen, clock = sender_with(answers, max_retries=5, notices=notices)
    start = clock.now
    sent = await sender.send(EVENTS[0])
    await sender.aclose()
    # Five failures open the breaker; seven probes (the preflight query) fail, the eighth is
    # answered, and the row goes out once more: failures during the outage cost it no retries.
    operations = [json.loads(r.content)["operationName"] for r in seen]
    assert operations == ["createCustomerEvent"] * 5 + ["preflight"] * 8 + ["createCustomerEvent"]
    assert sent.outcome.status == Status.DELIVERED and sent.outcome.attempts == 6
    assert sender.breaker.outages == 1
    assert any("pausing" in text for text in notices)
    assert any("answers again" in text for text in notices)
    # The probes came at growing intervals, so 13 requests took minutes, not seconds.
    assert clock.now - start > 60


async def test_an_outage_past_the_limit_stops_with_unreachable_and_leaves_rows_retryable():
    down = [httpx.ConnectError("refused")] * 100
    sender, seen, clock = sender_with(down, max_retries=5, outage_limit_s=30.0)
    start = clock.now
    results = await sender.send_many(EVENTS[:2])
    await sender.aclose()
    assert all(r.outcome.status == Status.RETRYABLE for r in results)
    assert all(isinstance(r.stop, Unreachable) for r in results)
    assert results[0].stop is not None and results[0].stop.exit_code == 5
    assert 30 <= clock.now - start <= 32
    assert len(seen) < 15


async def test_a_429_is_an_answer_and_ends_an_outage():
    down = [httpx.ConnectError("refused")] * 5
    limited = (429, {}, {"retry-after": "1"})
    # The probe meets a 429: Plain answers, so the outage is over.
    sender, seen, _ = sender_with([*down, limited, (200, CREATED)], max_retries=10)
    sent = await sender.send(EVENTS[0])
    await sender.aclose()
    assert sent.outcome.status == Status.DELIVERED
    assert not sender.breaker.is_open and sender.breaker.outages == 1
