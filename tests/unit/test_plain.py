import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backfill import plain
from backfill.plain import classify_http, classify_mutation, rate_limit_wait


def body(obj):
    return json.dumps(obj).encode()


def mutation_error(code, message="m", kind="VALIDATION", fields=()):
    return {"message": message, "type": kind, "code": code, "fields": list(fields)}


def test_success_is_delivered_with_ids():
    data = classify_http(
        200,
        {},
        body(
            {
                "data": {
                    "createCustomerEvent": {
                        "customerEvent": {"id": "tev_1", "customerId": "c_1"},
                        "error": None,
                    }
                }
            }
        ),
    )
    assert isinstance(data, dict)
    answer = classify_mutation(data["createCustomerEvent"])
    assert (answer.kind, answer.plain_event_id, answer.plain_customer_id) == (
        "delivered",
        "tev_1",
        "c_1",
    )


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(
            mutation_error(
                "input_validation",
                fields=[
                    {
                        "field": "externalId",
                        "message": "An event with this external ID already exists.",
                        "type": "VALIDATION",
                    }
                ],
            ),
            id="field-error",
        ),
        pytest.param(
            mutation_error(
                "input_validation",
                fields=[
                    {"field": "input.externalId", "message": "must be unique", "type": "VALIDATION"}
                ],
            ),
            id="nested-field",
        ),
        pytest.param(mutation_error("customer_event_already_exists"), id="code"),
        pytest.param(
            mutation_error("input_validation", message="Event with external id x already exists"),
            id="message",
        ),
    ],
)
def test_duplicate_external_id_is_already_existed(error):
    assert classify_mutation({"customerEvent": None, "error": error}).kind == "already_existed"


def test_other_external_id_field_errors_are_rejections():
    error = mutation_error(
        "input_validation",
        fields=[{"field": "externalId", "message": "too long", "type": "VALIDATION"}],
    )
    assert classify_mutation({"error": error}).kind == "rejected"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        pytest.param(
            mutation_error(
                "not_found",
                fields=[
                    {
                        "field": "customerIdentifier",
                        "message": "Customer not found",
                        "type": "NOT_FOUND",
                    }
                ],
            ),
            "rejected",
            id="not-found",
        ),
        pytest.param(mutation_error("forbidden", kind="FORBIDDEN"), "auth", id="forbidden"),
        pytest.param(mutation_error("internal", kind="INTERNAL"), "transient", id="internal"),
    ],
)
def test_mutation_errors(error, kind):
    answer = classify_mutation({"error": error})
    assert answer.kind == kind and answer.code == error["code"]


@pytest.mark.parametrize(
    ("status", "payload", "kind"),
    [
        pytest.param(
            401,
            {"errors": [{"message": "no", "extensions": {"code": "UNAUTHENTICATED"}}]},
            "auth",
            id="401",
        ),
        pytest.param(403, {}, "auth", id="403"),
        pytest.param(500, {}, "transient", id="500"),
        pytest.param(503, {}, "transient", id="503"),
        pytest.param(
            400,
            {"errors": [{"message": "bad", "extensions": {"code": "BAD_USER_INPUT"}}]},
            "rejected",
            id="bad-user-input",
        ),
        pytest.param(
            400,
            {"errors": [{"message": "bad", "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]},
            "rejected",
            id="validation",
        ),
        pytest.param(
            200,
            {"errors": [{"message": "x", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]},
            "transient",
            id="200-internal",
        ),
        pytest.param(
            200,
            {"errors": [{"message": "x", "extensions": {"code": "FORBIDDEN"}}]},
            "auth",
            id="200-forbidden",
        ),
    ],
)
def test_http_level_answers(status, payload, kind):
    answer = classify_http(status, {}, body(payload))
    assert not isinstance(answer, dict) and answer.kind == kind


def test_a_body_that_is_not_json_on_200_is_transient():
    answer = classify_http(200, {}, b"<html>proxy</html>")
    assert not isinstance(answer, dict) and answer.kind == "transient"


def test_429_waits_until_the_reset_by_the_servers_clock():
    headers = {
        "x-ratelimit-reset": "2026-01-06T15:30:00.000Z",
        "date": "Tue, 06 Jan 2026 15:29:48 GMT",
    }
    local_clock_is_wrong = datetime(2026, 1, 6, 15, 0, 0, tzinfo=UTC)
    answer = classify_http(429, headers, b"{}", now=local_clock_is_wrong)
    assert not isinstance(answer, dict)
    assert answer.kind == "rate_limited" and answer.wait_s == pytest.approx(12.0)


def test_retry_after_wins_and_missing_headers_fall_back():
    assert rate_limit_wait({"retry-after": "3"}) == 3.0
    assert rate_limit_wait({}) == 1.0
    assert rate_limit_wait({"x-ratelimit-reset": "garbage"}) == 1.0
    past = {"x-ratelimit-reset": "2020-01-01T00:00:00Z"}
    assert rate_limit_wait(past) == 0.0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "data",
                    "errors",
                    "extensions",
                    "code",
                    "message",
                    "createCustomerEvent",
                    "error",
                    "customerEvent",
                    "id",
                    "fields",
                    "field",
                    "type",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(st.sampled_from([200, 400, 401, 404, 413, 429, 500, 502]), json_values)
def test_any_body_is_classified_never_raised(status, payload):
    result = classify_http(status, {}, json.dumps(payload).encode())
    if isinstance(result, dict):
        answer = classify_mutation(result.get("createCustomerEvent"))
        assert answer.kind in ("delivered", "already_existed", "rejected", "transient", "auth")


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        pytest.param(404, b"<html>not found</html>", "transient", id="gateway-404"),
        pytest.param(400, b"bad request", "rejected", id="plain-400"),
        pytest.param(413, b"too large", "rejected", id="too-large"),
        pytest.param(200, b'{"error": "boom"}', "transient", id="odd-shape"),
        pytest.param(200, b'{"errors": [{"message": "x"}]}', "transient", id="unknown-error"),
        pytest.param(200, b'{"errors": "nope"}', "transient", id="errors-not-list"),
    ],
)
def test_odd_answers(status, body, kind):
    answer = classify_http(status, {}, body)
    assert not isinstance(answer, dict) and answer.kind == kind


def test_a_graphql_error_with_null_data_is_classified_by_its_code():
    payload = {
        "data": {"createCustomerEvent": None},
        "errors": [{"message": "bad", "extensions": {"code": "BAD_USER_INPUT"}}],
    }
    answer = classify_http(200, {}, body(payload))
    assert not isinstance(answer, dict) and answer.kind == "rejected"


def test_a_batch_whose_every_alias_failed_on_its_own_is_classified_per_alias():
    from backfill.models import EventKind

    body = {
        "data": {"e0": None, "e1": None},
        "errors": [
            {"message": "bad", "path": ["e0"], "extensions": {"code": "BAD_REQUEST"}},
            {"message": "boom", "path": ["e1"], "extensions": {"code": "INTERNAL_SERVER_ERROR"}},
        ],
    }
    kinds = [EventKind.CUSTOMER, EventKind.CUSTOMER]
    answers = plain.classify_batch(200, {}, json.dumps(body).encode(), kinds)
    assert isinstance(answers, list)
    assert [(a.kind, a.code) for a in answers] == [
        ("rejected", "BAD_REQUEST"),
        ("transient", "INTERNAL_SERVER_ERROR"),
    ]


def test_a_batch_refused_as_a_whole_is_one_answer():
    from backfill.models import EventKind

    body = {"errors": [{"message": "too big", "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]}
    answer = plain.classify_batch(400, {}, json.dumps(body).encode(), [EventKind.CUSTOMER] * 3)
    assert isinstance(answer, plain.Answer) and answer.kind == "rejected"
    # data null with an error naming no alias: the whole request too.
    body = {"data": None, "errors": [{"message": "x", "extensions": {"code": "UNAUTHENTICATED"}}]}
    answer = plain.classify_batch(200, {}, json.dumps(body).encode(), [EventKind.CUSTOMER] * 2)
    assert isinstance(answer, plain.Answer) and answer.kind == "auth"
