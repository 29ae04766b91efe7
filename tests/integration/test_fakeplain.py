"""The fake Plain server over real HTTP: success, Plain's rules, rate limits and faults."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from backfill.fakeplain import ALL_PERMISSIONS, ApiKey, FakePlain, Faults

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key"
READ_ONLY_KEY = "read-only-key"
OTHER_WORKSPACE_KEY = "other-workspace-key"
SAME_WORKSPACE_KEY = "second-key"
OTHER_WORKSPACE_ID = "w_01OTHERWORKSPACE000000000"
API_KEYS = {
    KEY: ApiKey(),
    SAME_WORKSPACE_KEY: ApiKey(),
    READ_ONLY_KEY: ApiKey(permissions=frozenset({"customer:read"})),
    OTHER_WORKSPACE_KEY: ApiKey(workspace_id=OTHER_WORKSPACE_ID),
}
UNKNOWN_CUSTOMERS = ("ghost@example.com", "cust-ghost")

ERROR_FIELDS = "error { message type code fields { field message type } }"
CREATE_CUSTOMER_EVENT = f"""
mutation CreateCustomerEvent($input: CreateCustomerEventInput!) {{
  createCustomerEvent(input: $input) {{
    customerEvent {{ id customerId title createdAt {{ iso8601 unixTimestamp }} }}
    {ERROR_FIELDS}
  }}
}}
"""
CREATE_THREAD_EVENT = f"""
mutation CreateThreadEvent($input: CreateThreadEventInput!) {{
  createThreadEvent(input: $input) {{
    threadEvent {{ id threadId title createdAt {{ iso8601 unixTimestamp }} }}
    {ERROR_FIELDS}
  }}
}}
"""
UPSERT_CUSTOMER = f"""
mutation UpsertCustomer($input: UpsertCustomerInput!) {{
  upsertCustomer(input: $input) {{
    result
    customer {{ id externalId fullName email {{ email isVerified }} }}
    {ERROR_FIELDS}
  }}
}}
"""
WORKSPACE_QUERY = "query { myWorkspace { id name publicName } myPermissions { permissions } }"
EVENT_ID = re.compile(r"^tev_[0-9A-HJKMNP-TV-Z]{26}$")
CUSTOMER_ID = re.compile(r"^c_[0-9A-HJKMNP-TV-Z]{26}$")
RESET_FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def shared_fake_plain() -> Iterator[FakePlain]:
    # One server for the module keeps it fast; `fake_plain` resets it for every test.
    with FakePlain(
        api_keys=API_KEYS, unknown_customers=UNKNOWN_CUSTOMERS, rate_limit=10_000
    ) as fake:
        yield fake


@pytest.fixture
def fake_plain(shared_fake_plain: FakePlain) -> FakePlain:
    shared_fake_plain.reset()
    shared_fake_plain.faults = Faults()
    shared_fake_plain.max_mutations = None
    shared_fake_plain.count_mutations = False
    shared_fake_plain.retry_after_s = None
    return shared_fake_plain


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=5.0) as http:
        yield http


def event_input(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "customerIdentifier": {"emailAddress": "ada@example.com"},
        "title": "Invoice paid",
        "components": [{"componentText": {"text": "Invoice INV-1 was paid."}}],
        "externalId": "evt-1",
        "timestamp": "2024-10-28T18:30:00Z",
    }
    event.update(overrides)
    return event


def graphql(
    client: httpx.Client,
    fake: FakePlain,
    query: str,
    variables: dict[str, Any] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    return client.post(fake.url, json={"query": query, "variables": variables}, **kwargs)


def create_event(client: httpx.Client, fake: FakePlain, **overrides: Any) -> dict[str, Any]:
    response = graphql(client, fake, CREATE_CUSTOMER_EVENT, {"input": event_input(**overrides)})
    assert response.status_code == 200, response.text
    output: dict[str, Any] = response.json()["data"]["createCustomerEvent"]
    return output


def admin_url(fake: FakePlain, path: str) -> str:
    return fake.url.removesuffix("/graphql/v1") + path


# --- success -----------------------------------------------------------------------------


def test_create_customer_event_returns_event_and_records_it(fake_plain, client):
    output = create_event(client, fake_plain)

    assert output["error"] is None
    event = output["customerEvent"]
    assert EVENT_ID.match(event["id"])
    assert CUSTOMER_ID.match(event["customerId"])
    assert event["title"] == "Invoice paid"
    assert event["createdAt"] == {
        "iso8601": "2024-10-28T18:30:00.000Z",
        "unixTimestamp": "1730140200000",
    }
    stats = fake_plain.stats()
    assert stats.requests == 1
    assert stats.by_operation == {"createCustomerEvent": 1}
    assert stats.creations == {"evt-1": 1}
    assert stats.create_attempts == {"evt-1": 1}
    assert stats.max_requests_in_window == 1
    [recorded] = stats.events
    assert (stats.mutations, stats.max_mutations_in_request, stats.refused_documents) == (1, 1, 0)
    assert recorded == {
        "id": event["id"],
        "externalId": "evt-1",
        "title": "Invoice paid",
        "timestamp": "2024-10-28T18:30:00Z",
        "customerIdentifier": {"emailAddress": "ada@example.com"},
        "threadId": None,
        "components": [{"componentText": {"text": "Invoice INV-1 was paid."}}],
        "customerId": event["customerId"],
        "createdAt": "2024-10-28T18:30:00.000Z",
    }


def test_timestamp_with_offset_is_normalised_to_utc(fake_plain, client):
    output = create_event(client, fake_plain, timestamp="2024-10-28T20:30:00.250+02:00")
    assert output["customerEvent"]["createdAt"]["iso8601"] == "2024-10-28T18:30:00.250Z"


def test_event_without_timestamp_or_external_id_is_created_now(fake_plain, client):
    before = datetime.now(UTC)
    output = create_event(client, fake_plain, timestamp=None, externalId=None)
    created = datetime.fromisoformat(output["customerEvent"]["createdAt"]["iso8601"])
    assert before.replace(microsecond=0) <= created <= datetime.now(UTC)
    assert fake_plain.stats().creations == {"": 1}


def test_event_ids_are_unique_and_customer_ids_deterministic(fake_plain, client):
    outputs = [create_event(client, fake_plain, externalId=f"evt-{n}") for n in range(20)]
    event_ids = {output["customerEvent"]["id"] for output in outputs}
    customer_ids = {output["customerEvent"]["customerId"] for output in outputs}
    assert len(event_ids) == 20
    assert len(customer_ids) == 1
    other = create_event(
        client, fake_plain, externalId="evt-x", customerIdentifier={"externalId": "cust-1"}
    )
    assert other["customerEvent"]["customerId"] not in customer_ids


def test_customer_id_identifier_is_used_as_is(fake_plain, client):
    customer = {"customerId": "c_01H14DGAFVRAPZB7K7M7W1Y9K9"}
    output = create_event(client, fake_plain, customerIdentifier=customer)
    assert output["customerEvent"]["customerId"] == "c_01H14DGAFVRAPZB7K7M7W1Y9K9"


def test_create_thread_event(fake_plain, client):
    thread_input = event_input(threadId="th_01HD44FHMCDSSWE38N14FSYV6K")
    del thread_input["customerIdentifier"]
    response = graphql(client, fake_plain, CREATE_THREAD_EVENT, {"input": thread_input})

    output = response.json()["data"]["createThreadEvent"]
    assert output["error"] is None
    assert output["threadEvent"]["threadId"] == "th_01HD44FHMCDSSWE38N14FSYV6K"
    assert EVENT_ID.match(output["threadEvent"]["id"])
    [recorded] = fake_plain.stats().events
    assert recorded["threadId"] == "th_01HD44FHMCDSSWE38N14FSYV6K"
    assert recorded["customerIdentifier"] is None


def test_thread_event_for_unknown_thread_is_not_found(fake_plain, client):
    thread_input = event_input(threadId="12345")
    del thread_input["customerIdentifier"]
    response = graphql(client, fake_plain, CREATE_THREAD_EVENT, {"input": thread_input})

    error = response.json()["data"]["createThreadEvent"]["error"]
    assert error["code"] == "not_found"
    assert error["fields"] == [
        {"field": "threadId", "message": "Thread not found", "type": "NOT_FOUND"}
    ]


def test_workspace_and_permissions_query(fake_plain, client):
    response = graphql(client, fake_plain, WORKSPACE_QUERY)

    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "myWorkspace": {
                "id": "w_01FAKEWORKSPACE0000000000",
                "name": "Fake Workspace",
                "publicName": "Fake Workspace",
            },
            "myPermissions": {"permissions": sorted(ALL_PERMISSIONS)},
        }
    }
    assert fake_plain.stats().by_operation == {"myWorkspace": 1, "myPermissions": 1}


def test_workspace_query_answers_for_the_keys_workspace(fake_plain, client):
    headers = {"Authorization": f"Bearer {OTHER_WORKSPACE_KEY}"}
    response = graphql(client, fake_plain, WORKSPACE_QUERY, headers=headers)
    assert response.json()["data"]["myWorkspace"]["id"] == OTHER_WORKSPACE_ID


# --- Plain's rules -----------------------------------------------------------------------

LONG_URL = "https://example.com/" + "a" * 50


def link(url: str = LONG_URL, label: str = "Open") -> dict[str, Any]:
    return {"componentLinkButton": {"linkButtonUrl": url, "linkButtonLabel": label}}


def text(value: str) -> dict[str, Any]:
    return {"componentText": {"text": value}}


VALIDATION_CASES = [
    pytest.param(
        {"customerIdentifier": {}},
        ("customerIdentifier", "VALIDATION"),
        id="customer-identifier-none",
    ),
    pytest.param(
        {"customerIdentifier": {"emailAddress": "ada@example.com", "externalId": "cust-1"}},
        ("customerIdentifier", "VALIDATION"),
        id="customer-identifier-two",
    ),
    pytest.param({"title": "   "}, ("title", "REQUIRED"), id="title-blank"),
    pytest.param({"components": [{}]}, ("components.0", "VALIDATION"), id="component-none-set"),
    pytest.param(
        {"components": [{**text("a"), "componentDivider": {}}]},
        ("components.0", "VALIDATION"),
        id="component-two-set",
    ),
    pytest.param(
        {"components": [text("")]},
        ("components.0.componentText.text", "VALIDATION"),
        id="text-empty",
    ),
    pytest.param(
        {"components": [text("ok"), text("x" * 10_001)]},
        ("components.1.componentText.text", "VALIDATION"),
        id="text-too-long",
    ),
    pytest.param(
        {"components": [{"componentPlainText": {"plainText": "x" * 10_001}}]},
        ("components.0.componentPlainText.plainText", "VALIDATION"),
        id="plain-text-too-long",
    ),
    pytest.param(
        {"components": [{"componentBadge": {"badgeLabel": "x" * 501}}]},
        ("components.0.componentBadge.badgeLabel", "VALIDATION"),
        id="badge-label-too-long",
    ),
    pytest.param(
        {"components": [link(label="x" * 501)]},
        ("components.0.componentLinkButton.linkButtonLabel", "VALIDATION"),
        id="link-button-label-too-long",
    ),
    pytest.param(
        {
            "components": [
                {
                    "componentWorkflowButton": {
                        "workflowButtonWorkflowIdentifier": {"workflowKey": "refund"},
                        "workflowButtonLabel": "x" * 501,
                    }
                }
            ]
        },
        ("components.0.componentWorkflowButton.workflowButtonLabel", "VALIDATION"),
        id="workflow-button-label-too-long",
    ),
    pytest.param(
        {
            "components": [
                {
                    "componentCopyButton": {
                        "copyButtonValue": "v",
                        "copyButtonTooltipLabel": "x" * 501,
                    }
                }
            ]
        },
        ("components.0.componentCopyButton.copyButtonTooltipLabel", "VALIDATION"),
        id="copy-button-tooltip-too-long",
    ),
    pytest.param(
        {"components": [{"componentCopyButton": {"copyButtonValue": "x" * 1001}}]},
        ("components.0.componentCopyButton.copyButtonValue", "VALIDATION"),
        id="copy-button-value-too-long",
    ),
    pytest.param(
        {"components": [link(url="not a url")]},
        ("components.0.componentLinkButton.linkButtonUrl", "VALIDATION"),
        id="link-url-invalid",
    ),
    pytest.param(
        {"components": [link(url="ftp://example.com/file")]},
        ("components.0.componentLinkButton.linkButtonUrl", "VALIDATION"),
        id="link-url-not-http",
    ),
    pytest.param(
        {"components": [{"componentRow": {"rowMainContent": [], "rowAsideContent": []}}]},
        ("components.0.componentRow.rowMainContent", "VALIDATION"),
        id="row-main-content-empty",
    ),
    pytest.param(
        {"components": [{"componentRow": {"rowMainContent": [text("")], "rowAsideContent": []}}]},
        ("components.0.componentRow.rowMainContent.0.componentText.text", "VALIDATION"),
        id="row-nested-text-empty",
    ),
    pytest.param(
        {"timestamp": "2024-10-28T18:30:00"},
        ("timestamp", "VALIDATION"),
        id="timestamp-without-timezone",
    ),
    pytest.param({"timestamp": "yesterday"}, ("timestamp", "VALIDATION"), id="timestamp-garbage"),
]


@pytest.mark.parametrize(("overrides", "expected"), VALIDATION_CASES)
def test_validation_rule(fake_plain, client, overrides, expected):
    output = create_event(client, fake_plain, **overrides)

    assert output["customerEvent"] is None
    error = output["error"]
    assert error["type"] == "VALIDATION"
    assert error["code"] == "input_validation"
    assert error["message"] == "There was a validation error."
    field, field_type = expected
    assert [(item["field"], item["type"]) for item in error["fields"]] == [(field, field_type)]
    assert error["fields"][0]["message"]
    stats = fake_plain.stats()
    assert stats.creations == {}
    assert stats.create_attempts == {"evt-1": 1}


@pytest.mark.parametrize(
    "components",
    [
        pytest.param([text("x" * 10_000)], id="text-at-limit"),
        pytest.param([{"componentBadge": {"badgeLabel": "x" * 500}}], id="label-at-limit"),
        pytest.param(
            [{"componentCopyButton": {"copyButtonValue": "x" * 1000}}], id="copy-value-at-limit"
        ),
        pytest.param([link(url="http://localhost:8080/a?b=c")], id="http-url"),
        pytest.param(
            [{"componentRow": {"rowMainContent": [text("a")], "rowAsideContent": []}}],
            id="row",
        ),
        pytest.param(
            [{"componentSpacer": {"spacerSize": "XL"}}, {"componentDivider": {}}], id="spacer"
        ),
        pytest.param([], id="no-components"),
    ],
)
def test_valid_components_are_accepted(fake_plain, client, components):
    output = create_event(client, fake_plain, components=components)
    assert output["error"] is None


def test_duplicate_external_id_is_rejected_and_not_created(fake_plain, client):
    assert create_event(client, fake_plain)["error"] is None
    duplicate = create_event(client, fake_plain, title="Another title")
    thread_input = event_input(threadId="th_01HD44FHMCDSSWE38N14FSYV6K")
    del thread_input["customerIdentifier"]
    thread_response = graphql(client, fake_plain, CREATE_THREAD_EVENT, {"input": thread_input})

    message = "An event with this external ID already exists."
    expected = {
        "message": message,
        "type": "VALIDATION",
        "code": "input_validation",
        "fields": [{"field": "externalId", "message": message, "type": "VALIDATION"}],
    }
    assert duplicate == {"customerEvent": None, "error": expected}
    assert thread_response.json()["data"]["createThreadEvent"]["error"] == expected
    stats = fake_plain.stats()
    assert stats.creations == {"evt-1": 1}
    assert stats.create_attempts == {"evt-1": 3}
    assert len(stats.events) == 1


def test_same_external_id_in_another_workspace_is_separate(fake_plain, client):
    assert create_event(client, fake_plain)["error"] is None
    headers = {"Authorization": f"Bearer {OTHER_WORKSPACE_KEY}"}
    response = graphql(
        client, fake_plain, CREATE_CUSTOMER_EVENT, {"input": event_input()}, headers=headers
    )
    assert response.json()["data"]["createCustomerEvent"]["error"] is None
    assert fake_plain.stats().creations == {"evt-1": 2}


@pytest.mark.parametrize(
    "identifier",
    [
        pytest.param({"emailAddress": "Ghost@Example.com"}, id="email"),
        pytest.param({"externalId": "cust-ghost"}, id="external-id"),
        pytest.param({"customerId": "12345"}, id="customer-id-malformed"),
    ],
)
def test_unknown_customer_is_not_found(fake_plain, client, identifier):
    output = create_event(client, fake_plain, customerIdentifier=identifier)

    assert output == {
        "customerEvent": None,
        "error": {
            "message": "Customer not found",
            "type": "VALIDATION",
            "code": "not_found",
            "fields": [
                {
                    "field": "customerIdentifier",
                    "message": "Customer not found",
                    "type": "NOT_FOUND",
                }
            ],
        },
    }
    assert fake_plain.stats().creations == {}


def test_upsert_customer_creates_then_noop_then_update(fake_plain, client):
    upsert = {
        "identifier": {"emailAddress": "ghost@example.com"},
        "onCreate": {
            "fullName": "Casper Ghost",
            "externalId": "cust-ghost",
            "email": {"email": "ghost@example.com", "isVerified": True},
        },
        "onUpdate": {},
    }
    results = []
    for on_update in ({}, {}, {"fullName": {"value": "Casper the Friendly"}}):
        upsert["onUpdate"] = on_update
        response = graphql(client, fake_plain, UPSERT_CUSTOMER, {"input": upsert})
        output = response.json()["data"]["upsertCustomer"]
        assert output["error"] is None
        results.append((output["result"], output["customer"]["fullName"]))

    assert results == [
        ("CREATED", "Casper Ghost"),
        ("NOOP", "Casper Ghost"),
        ("UPDATED", "Casper the Friendly"),
    ]
    # Once upserted, a customer that was unknown receives events, by either identifier.
    by_email = create_event(
        client, fake_plain, customerIdentifier={"emailAddress": "ghost@example.com"}
    )
    by_external_id = create_event(
        client, fake_plain, externalId="evt-2", customerIdentifier={"externalId": "cust-ghost"}
    )
    assert by_email["customerEvent"]["customerId"] == by_external_id["customerEvent"]["customerId"]
    assert fake_plain.stats().by_operation == {"upsertCustomer": 3, "createCustomerEvent": 2}


# --- auth and permissions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer wrong-key"}, id="unknown-key"),
        pytest.param({"Authorization": f"Basic {KEY}"}, id="wrong-scheme"),
    ],
)
def test_bad_key_is_401(fake_plain, headers):
    with httpx.Client(headers=headers) as anonymous:
        response = graphql(anonymous, fake_plain, WORKSPACE_QUERY)

    assert response.status_code == 401
    assert response.json() == {
        "errors": [
            {"message": "Authentication required", "extensions": {"code": "UNAUTHENTICATED"}}
        ]
    }
    assert "x-ratelimit-limit" not in response.headers
    stats = fake_plain.stats()
    assert (stats.requests, stats.unauthenticated, stats.by_operation) == (1, 1, {})


def test_key_without_permission_gets_forbidden_mutation_error(fake_plain, client):
    headers = {"Authorization": f"Bearer {READ_ONLY_KEY}"}
    response = graphql(
        client, fake_plain, CREATE_CUSTOMER_EVENT, {"input": event_input()}, headers=headers
    )
    permissions = graphql(client, fake_plain, WORKSPACE_QUERY, headers=headers)

    assert response.status_code == 200
    assert response.json()["data"]["createCustomerEvent"] == {
        "customerEvent": None,
        "error": {
            "message": "Missing permission customerEvent:create",
            "type": "FORBIDDEN",
            "code": "forbidden",
            "fields": [],
        },
    }
    assert permissions.json()["data"]["myPermissions"] == {"permissions": ["customer:read"]}
    assert fake_plain.stats().creations == {}


# --- rate limit --------------------------------------------------------------------------


@pytest.mark.timing
def test_rate_limit_window_rejects_then_recovers():
    with (
        FakePlain(rate_limit=5, window_s=1.0) as fake,
        httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        responses = [graphql(http, fake, WORKSPACE_QUERY) for _ in range(6)]

        assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 429]
        assert [r.headers["x-ratelimit-remaining"] for r in responses] == [
            "4", "3", "2", "1", "0", "0"
        ]  # fmt: skip
        limited = responses[-1]
        assert limited.json() == {
            "errors": [
                {
                    "message": "Too Many Requests - Rate limit exceeded",
                    "extensions": {"code": "RATE_LIMITED"},
                }
            ]
        }
        assert limited.headers["x-ratelimit-limit"] == "5"
        assert "retry-after" not in limited.headers
        reset = datetime.fromisoformat(limited.headers["x-ratelimit-reset"])
        assert {r.headers["x-ratelimit-reset"] for r in responses} == {
            limited.headers["x-ratelimit-reset"]
        }

        time.sleep(max(0.0, (reset - datetime.now(UTC)).total_seconds()) + 0.05)
        recovered = graphql(http, fake, WORKSPACE_QUERY)

        assert recovered.status_code == 200
        assert recovered.headers["x-ratelimit-remaining"] == "4"
        stats = fake.stats()
        assert (stats.requests, stats.rate_limited, stats.max_requests_in_window) == (7, 1, 5)


def test_retry_after_header_is_whole_seconds_rounded_up():
    with (
        FakePlain(rate_limit=1, window_s=60.0, retry_after_s=1.2) as fake,
        httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        admitted = graphql(http, fake, WORKSPACE_QUERY)
        limited = graphql(http, fake, WORKSPACE_QUERY)
        fake.retry_after_s = 3
        whole = graphql(http, fake, WORKSPACE_QUERY)
        fake.retry_after_s = None
        without = graphql(http, fake, WORKSPACE_QUERY)

        assert "retry-after" not in admitted.headers
        assert [r.status_code for r in (limited, whole, without)] == [429, 429, 429]
        assert limited.headers["retry-after"] == "2"
        assert whole.headers["retry-after"] == "3"
        assert "retry-after" not in without.headers
        assert limited.headers["x-ratelimit-remaining"] == "0"


def test_rate_limit_is_shared_by_keys_of_one_workspace():
    with FakePlain(rate_limit=2, window_s=60.0, api_keys=API_KEYS) as fake, httpx.Client() as http:

        def status(key: str) -> int:
            headers = {"Authorization": f"Bearer {key}"}
            return graphql(http, fake, WORKSPACE_QUERY, headers=headers).status_code

        statuses = [
            status(KEY),
            status(SAME_WORKSPACE_KEY),
            status(KEY),
            status(OTHER_WORKSPACE_KEY),
        ]
        assert statuses == [200, 200, 429, 200]


def test_response_headers_have_plain_formats(fake_plain, client):
    response = graphql(client, fake_plain, WORKSPACE_QUERY)

    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-ratelimit-limit"] == "10000"
    assert response.headers["x-ratelimit-remaining"] == "9999"
    reset_header = response.headers["x-ratelimit-reset"]
    assert RESET_FORMAT.match(reset_header), reset_header
    reset = datetime.fromisoformat(reset_header)
    now = datetime.now(UTC)
    assert 0 <= (reset - now).total_seconds() <= 60.5
    date = parsedate_to_datetime(response.headers["date"])
    assert abs((date - now).total_seconds()) < 5


# --- request errors ----------------------------------------------------------------------


def test_unknown_input_field_in_variables_is_bad_user_input(fake_plain, client):
    variables = {"input": event_input(colour="red")}
    response = graphql(client, fake_plain, CREATE_CUSTOMER_EVENT, variables)

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "colour" in error["message"]
    assert fake_plain.stats().create_attempts == {}


def test_wrong_enum_value_is_bad_user_input(fake_plain, client):
    components = [{"componentText": {"text": "hi", "textSize": "HUGE"}}]
    response = graphql(
        client, fake_plain, CREATE_CUSTOMER_EVENT, {"input": event_input(components=components)}
    )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "components[0].componentText.textSize" in error["message"]


def test_missing_required_input_is_bad_user_input(fake_plain, client):
    variables = {"input": {"customerIdentifier": {"externalId": "c1"}, "components": []}}
    response = graphql(client, fake_plain, CREATE_CUSTOMER_EVENT, variables)

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "title" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b"{not json", "BAD_REQUEST", id="malformed-json"),
        pytest.param(b'{"variables": {}}', "BAD_REQUEST", id="no-query"),
        pytest.param(b'{"query": "mutation {"}', "GRAPHQL_PARSE_FAILED", id="parse-error"),
        pytest.param(
            b'{"query": "{ myWorkspace { nope } }"}', "GRAPHQL_VALIDATION_FAILED", id="invalid"
        ),
        pytest.param(
            b'{"query": "query A { myWorkspace { id } } query B { myWorkspace { id } }"}',
            "OPERATION_RESOLUTION_FAILURE",
            id="ambiguous-operation",
        ),
    ],
)
def test_bad_request_is_400(fake_plain, client, body, code):
    response = client.post(
        fake_plain.url, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == code
    assert response.headers["x-ratelimit-remaining"] == "9999"


def test_other_paths_are_404_and_get_is_405(fake_plain, client):
    assert client.post(admin_url(fake_plain, "/graphql"), json={}).status_code == 404
    assert client.get(admin_url(fake_plain, "/")).status_code == 404
    assert client.get(fake_plain.url).status_code == 405
    assert fake_plain.stats().requests == 0


# --- several mutations in one document ---------------------------------------------------

OUTPUT_FIELDS = {
    "createCustomerEvent": ("CreateCustomerEventInput", "customerEvent { id customerId }"),
    "createThreadEvent": ("CreateThreadEventInput", "threadEvent { id threadId }"),
}


def batch_document(*operations: str) -> str:
    """A mutation with one aliased field per operation: `e0: op(input: $i0)`, and so on."""
    variables = ", ".join(
        f"$i{n}: {OUTPUT_FIELDS[operation][0]}!" for n, operation in enumerate(operations)
    )
    fields = " ".join(
        f"e{n}: {operation}(input: $i{n}) {{ {OUTPUT_FIELDS[operation][1]} {ERROR_FIELDS} }}"
        for n, operation in enumerate(operations)
    )
    return f"mutation batch({variables}) {{ {fields} }}"


def customer_batch(
    client: httpx.Client, fake: FakePlain, *external_ids: str, **kwargs: Any
) -> httpx.Response:
    document = batch_document(*["createCustomerEvent"] * len(external_ids))
    variables = {f"i{n}": event_input(externalId=eid) for n, eid in enumerate(external_ids)}
    return graphql(client, fake, document, variables, **kwargs)


def thread_input(**overrides: Any) -> dict[str, Any]:
    event = event_input(threadId="th_01HD44FHMCDSSWE38N14FSYV6K", **overrides)
    del event["customerIdentifier"]
    return event


def test_aliased_mutations_count_as_separate_attempts_and_one_request(fake_plain, client):
    response = customer_batch(client, fake_plain, "evt-a", "evt-b")

    data = response.json()["data"]
    assert data["e0"]["error"] is None and data["e1"]["error"] is None
    assert data["e0"]["customerEvent"]["id"] != data["e1"]["customerEvent"]["id"]
    assert response.headers["x-ratelimit-remaining"] == "9999"
    stats = fake_plain.stats()
    assert stats.requests == 1
    assert stats.by_operation == {"createCustomerEvent": 2}
    assert stats.create_attempts == {"evt-a": 1, "evt-b": 1}
    assert stats.creations == {"evt-a": 1, "evt-b": 1}
    assert (stats.mutations, stats.max_mutations_in_request, stats.max_requests_in_window) == (
        2,
        2,
        1,
    )


def test_mixed_batch_gives_each_alias_its_own_output(fake_plain, client):
    document = batch_document("createCustomerEvent", "createThreadEvent")
    variables = {"i0": event_input(externalId="evt-c"), "i1": thread_input(externalId="evt-t")}
    response = graphql(client, fake_plain, document, variables)

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert list(data) == ["e0", "e1"]
    assert data["e0"]["error"] is None
    assert CUSTOMER_ID.match(data["e0"]["customerEvent"]["customerId"])
    assert data["e1"]["error"] is None
    assert data["e1"]["threadEvent"]["threadId"] == "th_01HD44FHMCDSSWE38N14FSYV6K"
    stats = fake_plain.stats()
    assert [event["externalId"] for event in stats.events] == ["evt-c", "evt-t"]
    assert stats.by_operation == {"createCustomerEvent": 1, "createThreadEvent": 1}


def test_duplicate_in_one_alias_fails_only_that_alias(fake_plain, client):
    assert create_event(client, fake_plain, externalId="evt-old")["error"] is None
    response = customer_batch(client, fake_plain, "evt-old", "evt-new", "evt-new", "evt-last")

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    duplicate = {
        "message": "An event with this external ID already exists.",
        "type": "VALIDATION",
        "code": "input_validation",
        "fields": [
            {
                "field": "externalId",
                "message": "An event with this external ID already exists.",
                "type": "VALIDATION",
            }
        ],
    }
    assert data["e0"] == {"customerEvent": None, "error": duplicate}
    assert data["e1"]["error"] is None and EVENT_ID.match(data["e1"]["customerEvent"]["id"])
    assert data["e2"] == {"customerEvent": None, "error": duplicate}
    assert data["e3"]["error"] is None
    stats = fake_plain.stats()
    assert stats.creations == {"evt-old": 1, "evt-new": 1, "evt-last": 1}
    assert stats.create_attempts == {"evt-old": 2, "evt-new": 2, "evt-last": 1}
    assert stats.mutations == 5


@pytest.mark.parametrize(
    ("bad_input", "mentions"),
    [
        pytest.param(
            event_input(externalId="evt-bad", components=[{"componentText": {}}]),
            "text",
            id="component-missing-required-field",
        ),
        pytest.param(
            event_input(
                externalId="evt-bad",
                components=[{"componentText": {"text": "hi", "textSize": "HUGE"}}],
            ),
            "textSize",
            id="wrong-enum",
        ),
        pytest.param(event_input(externalId="evt-bad", colour="red"), "colour", id="unknown-field"),
    ],
)
def test_invalid_variable_in_one_alias_fails_the_whole_request(
    fake_plain, client, bad_input, mentions
):
    document = batch_document("createCustomerEvent", "createCustomerEvent", "createThreadEvent")
    variables = {
        "i0": event_input(externalId="evt-good"),
        "i1": bad_input,
        "i2": thread_input(externalId="evt-thread"),
    }
    response = graphql(client, fake_plain, document, variables)

    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$i1" in error["message"] and mentions in error["message"]
    assert "path" not in error
    assert response.headers["x-ratelimit-remaining"] == "9999"
    stats = fake_plain.stats()
    assert (stats.by_operation, stats.create_attempts, stats.creations) == ({}, {}, {})
    assert (stats.mutations, stats.max_mutations_in_request) == (0, 3)


def test_max_mutations_refuses_larger_documents_whole(fake_plain, client):
    fake_plain.max_mutations = 2
    refused = customer_batch(client, fake_plain, "evt-a", "evt-b", "evt-c")
    allowed = customer_batch(client, fake_plain, "evt-a", "evt-b")
    single = create_event(client, fake_plain, externalId="evt-c")
    query = graphql(client, fake_plain, WORKSPACE_QUERY)

    assert refused.status_code == 400
    assert refused.json() == {
        "errors": [
            {
                "message": "Query complexity limit exceeded: the operation has 3 top-level "
                "mutations, at most 2 are allowed",
                "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
            }
        ]
    }
    assert refused.headers["x-ratelimit-remaining"] == "9999"
    assert refused.headers["x-ratelimit-limit"] == "10000"
    assert allowed.status_code == 200 and single["error"] is None
    assert query.status_code == 200
    stats = fake_plain.stats()
    assert stats.refused_documents == 1
    assert stats.requests == stats.max_requests_in_window == 4
    assert stats.create_attempts == {"evt-a": 1, "evt-b": 1, "evt-c": 1}
    assert stats.by_operation == {"createCustomerEvent": 3, "myWorkspace": 1, "myPermissions": 1}
    assert (stats.mutations, stats.max_mutations_in_request) == (3, 3)
    with httpx.Client() as anonymous:
        admin_stats = anonymous.get(admin_url(fake_plain, "/_fake/stats")).json()
    assert admin_stats["refused_documents"] == 1
    assert admin_stats["mutations"] == 3


def test_max_mutations_refusal_draws_no_fault(fake_plain, client):
    fake_plain.max_mutations = 1
    fake_plain.faults = Faults(fail_next=1)
    refused = customer_batch(client, fake_plain, "evt-a", "evt-b")
    failed = graphql(client, fake_plain, CREATE_CUSTOMER_EVENT, {"input": event_input()})

    assert refused.status_code == 400
    assert failed.status_code == 500, "the refused request left fail_next for this one"
    stats = fake_plain.stats()
    assert (stats.refused_documents, stats.errors_500) == (1, 1)


def test_max_mutations_counts_root_fields_as_executed(fake_plain, client):
    document = """
    mutation batch($i0: CreateCustomerEventInput!, $i1: CreateCustomerEventInput!,
                   $i2: CreateCustomerEventInput!, $skip: Boolean = false) {
      __typename
      e0: createCustomerEvent(input: $i0) { customerEvent { id } }
      ... on Mutation { e1: createCustomerEvent(input: $i1) { customerEvent { id } } }
      ...Third
      e3: createCustomerEvent(input: $i2) @include(if: false) { customerEvent { id } }
    }
    fragment Third on Mutation {
      e2: createCustomerEvent(input: $i2) @skip(if: $skip) { customerEvent { id } }
    }
    """
    fake_plain.max_mutations = 2
    variables = {f"i{n}": event_input(externalId=f"evt-{n}") for n in range(3)}
    refused = graphql(client, fake_plain, document, variables)
    skipped = graphql(client, fake_plain, document, {**variables, "skip": True})

    assert refused.status_code == 400
    assert "has 3 top-level mutations" in refused.json()["errors"][0]["message"]
    assert skipped.status_code == 200, skipped.text
    assert set(skipped.json()["data"]) == {"__typename", "e0", "e1"}
    stats = fake_plain.stats()
    assert (stats.mutations, stats.max_mutations_in_request) == (2, 3)


def test_count_mutations_charges_a_unit_per_mutation():
    with (
        FakePlain(rate_limit=5, window_s=60.0, count_mutations=True) as fake,
        httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        preflight = graphql(http, fake, WORKSPACE_QUERY)
        three = customer_batch(http, fake, "evt-a", "evt-b", "evt-c")
        too_many = customer_batch(http, fake, "evt-d", "evt-e")
        one = customer_batch(http, fake, "evt-d")
        exhausted = graphql(http, fake, WORKSPACE_QUERY)

        assert [r.status_code for r in (preflight, three, too_many, one, exhausted)] == [
            200, 200, 429, 200, 429
        ]  # fmt: skip
        assert [
            r.headers["x-ratelimit-remaining"] for r in (preflight, three, too_many, one, exhausted)
        ] == ["4", "1", "1", "0", "0"]
        assert too_many.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        stats = fake.stats()
        assert stats.create_attempts == {"evt-a": 1, "evt-b": 1, "evt-c": 1, "evt-d": 1}
        assert stats.creations == {"evt-a": 1, "evt-b": 1, "evt-c": 1, "evt-d": 1}
        assert (stats.rate_limited, stats.max_requests_in_window, stats.mutations) == (2, 3, 4)
        assert stats.max_mutations_in_request == 3


def test_count_mutations_can_change_while_serving_and_refusals_still_cost():
    with (
        FakePlain(rate_limit=20, window_s=60.0) as fake,
        httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        per_request = customer_batch(http, fake, "evt-a", "evt-b", "evt-c")
        fake.count_mutations = True
        per_mutation = customer_batch(http, fake, "evt-d", "evt-e", "evt-f")
        fake.max_mutations = 2
        refused = customer_batch(http, fake, "evt-g", "evt-h", "evt-i")

        assert fake.count_mutations is True and fake.max_mutations == 2
        assert [r.status_code for r in (per_request, per_mutation, refused)] == [200, 200, 400]
        remaining = [
            r.headers["x-ratelimit-remaining"] for r in (per_request, per_mutation, refused)
        ]
        assert remaining == ["19", "16", "13"]
        assert fake.stats().refused_documents == 1


def test_a_batch_larger_than_the_rate_limit_is_never_admitted():
    with (
        FakePlain(rate_limit=2, window_s=60.0, count_mutations=True) as fake,
        httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        response = customer_batch(http, fake, "evt-a", "evt-b", "evt-c")

        assert response.status_code == 429
        assert response.headers["x-ratelimit-remaining"] == "2"
        assert fake.stats().create_attempts == {}


@pytest.mark.parametrize(
    ("faults", "statistic"),
    [
        pytest.param(Faults(error_500=1.0), "errors_500", id="error-500"),
        pytest.param(Faults(drop=1.0), "drops", id="drop"),
    ],
)
def test_failing_faults_apply_no_alias(fake_plain, client, faults, statistic):
    fake_plain.faults = faults
    try:
        response = customer_batch(client, fake_plain, "evt-a", "evt-b")
    except (httpx.RemoteProtocolError, httpx.ReadError):
        assert statistic == "drops"
    else:
        assert response.status_code == 500
    stats = fake_plain.stats()
    assert getattr(stats, statistic) == 1
    assert stats.creations == {}
    assert stats.create_attempts == {"evt-a": 1, "evt-b": 1}
    assert (stats.mutations, stats.max_mutations_in_request) == (0, 2)


def test_applied_then_drop_applies_every_alias(fake_plain, client):
    fake_plain.faults = Faults(applied_then_drop=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        customer_batch(client, fake_plain, "evt-a", "evt-b")
    fake_plain.faults = Faults()
    retry = customer_batch(client, fake_plain, "evt-a", "evt-b").json()["data"]

    assert retry["e0"]["error"]["fields"][0]["field"] == "externalId"
    assert retry["e1"]["error"]["fields"][0]["field"] == "externalId"
    stats = fake_plain.stats()
    assert stats.applied_then_drops == 1
    assert stats.creations == {"evt-a": 1, "evt-b": 1}
    assert stats.create_attempts == {"evt-a": 2, "evt-b": 2}
    assert stats.mutations == 2, "the dropped answer is not counted"


def test_fail_next_counts_requests_not_aliases(fake_plain, client):
    fake_plain.faults = Faults(fail_next=1)
    statuses = [customer_batch(client, fake_plain, "evt-a", "evt-b").status_code for _ in range(2)]

    assert statuses == [500, 200]
    assert fake_plain.stats().creations == {"evt-a": 1, "evt-b": 1}


def test_mutation_settings_are_validated(fake_plain):
    with pytest.raises(ValueError, match="max_mutations"):
        FakePlain(max_mutations=0)
    with pytest.raises(ValueError, match="retry_after_s"):
        FakePlain(retry_after_s=-1.0)
    with pytest.raises(ValueError, match="max_mutations"):
        fake_plain.max_mutations = -1
    assert fake_plain.max_mutations is None


# --- faults ------------------------------------------------------------------------------


def test_error_500_fault_applies_nothing(fake_plain, client):
    fake_plain.faults = Faults(error_500=1.0)
    response = graphql(client, fake_plain, CREATE_CUSTOMER_EVENT, {"input": event_input()})
    query = graphql(client, fake_plain, WORKSPACE_QUERY)

    assert response.status_code == 500
    assert response.json() == {
        "errors": [
            {"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
        ]
    }
    assert "x-ratelimit-remaining" in response.headers
    assert query.status_code == 200, "faults only hit mutations"
    stats = fake_plain.stats()
    assert stats.errors_500 == 1
    assert stats.creations == {}
    assert stats.create_attempts == {"evt-1": 1}


def test_fail_next_fails_exactly_n_mutations(fake_plain, client):
    fake_plain.faults = Faults(fail_next=2)
    statuses = [
        graphql(client, fake_plain, CREATE_CUSTOMER_EVENT, {"input": event_input()}).status_code
        for _ in range(3)
    ]
    assert statuses == [500, 500, 200]
    stats = fake_plain.stats()
    assert (stats.errors_500, stats.creations, stats.create_attempts) == (
        2,
        {"evt-1": 1},
        {"evt-1": 3},
    )


def test_drop_fault_closes_connection_without_applying(fake_plain, client):
    fake_plain.faults = Faults(drop=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        graphql(client, fake_plain, CREATE_CUSTOMER_EVENT, {"input": event_input()})

    stats = fake_plain.stats()
    assert (stats.drops, stats.creations, stats.create_attempts) == (1, {}, {"evt-1": 1})


def test_applied_then_drop_creates_the_event_without_answering(fake_plain, client):
    fake_plain.faults = Faults(applied_then_drop=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        graphql(client, fake_plain, CREATE_CUSTOMER_EVENT, {"input": event_input()})
    fake_plain.faults = Faults()
    retry = create_event(client, fake_plain)

    assert retry["error"]["fields"][0]["field"] == "externalId"
    stats = fake_plain.stats()
    assert stats.applied_then_drops == 1
    assert stats.creations == {"evt-1": 1}
    assert stats.create_attempts == {"evt-1": 2}


def test_random_faults_are_reproducible_from_the_seed(client):
    def statuses() -> list[int]:
        with FakePlain(faults=Faults(error_500=0.5, seed=7)) as fake:
            return [
                graphql(
                    client, fake, CREATE_CUSTOMER_EVENT, {"input": event_input(externalId=f"e{n}")}
                ).status_code
                for n in range(16)
            ]

    first = statuses()
    assert first == statuses()
    assert set(first) == {200, 500}


def test_outage_answers_503_to_everything_until_it_ends(fake_plain, client):
    fake_plain.faults = Faults(outage_until=time.monotonic() + 60)
    during = [
        graphql(client, fake_plain, WORKSPACE_QUERY),
        graphql(client, fake_plain, CREATE_CUSTOMER_EVENT, {"input": event_input()}),
    ]
    fake_plain.faults = Faults()
    after = graphql(client, fake_plain, WORKSPACE_QUERY)

    assert [r.status_code for r in during] == [503, 503]
    assert during[0].json() == {
        "errors": [
            {"message": "Service Unavailable", "extensions": {"code": "SERVICE_UNAVAILABLE"}}
        ]
    }
    assert after.status_code == 200
    stats = fake_plain.stats()
    assert (stats.unavailable, stats.requests, stats.create_attempts) == (2, 3, {})


def test_latency_delays_the_answer(fake_plain, client):
    fake_plain.faults = Faults(latency_ms=(60.0, 60.0))
    started = time.perf_counter()
    response = graphql(client, fake_plain, WORKSPACE_QUERY)
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.05


def test_faults_reject_impossible_probabilities():
    with pytest.raises(ValueError, match="probabilities"):
        Faults(error_500=0.7, drop=0.7)
    with pytest.raises(ValueError, match="latency_ms"):
        Faults(latency_ms=(10.0, 1.0))


# --- admin interface ---------------------------------------------------------------------


def test_admin_stats_events_and_reset(fake_plain, client):
    create_event(client, fake_plain)
    with httpx.Client() as anonymous:
        stats = anonymous.get(admin_url(fake_plain, "/_fake/stats")).json()
        events = anonymous.get(admin_url(fake_plain, "/_fake/events")).json()
        reset = anonymous.post(admin_url(fake_plain, "/_fake/reset"))

    assert stats["requests"] == 1
    assert stats["creations"] == {"evt-1": 1}
    assert stats["by_operation"] == {"createCustomerEvent": 1}
    assert [event["externalId"] for event in events] == ["evt-1"]
    assert events == stats["events"]
    assert reset.status_code == 200
    after = fake_plain.stats()
    assert (after.requests, after.creations, after.events) == (0, {}, [])
    # The duplicate memory goes with the events.
    assert create_event(client, fake_plain)["error"] is None


def test_admin_faults_endpoint(fake_plain, client):
    faults_url = admin_url(fake_plain, "/_fake/faults")
    with httpx.Client() as anonymous:
        failing = anonymous.post(faults_url, json={"error_500": 1.0, "latency_ms": [0, 1]})
        during_500 = graphql(client, fake_plain, CREATE_CUSTOMER_EVENT, {"input": event_input()})
        anonymous.post(faults_url, json={"outage_s": 30})
        during_outage = graphql(client, fake_plain, WORKSPACE_QUERY)
        stats_in_outage = anonymous.get(admin_url(fake_plain, "/_fake/stats"))
        cleared = anonymous.post(faults_url, json={})
        bad = anonymous.post(faults_url, json={"explode": True})

    assert failing.status_code == 200
    assert failing.json()["error_500"] == 1.0
    assert during_500.status_code == 500
    assert during_outage.status_code == 503
    assert stats_in_outage.status_code == 200, "admin paths ignore outages"
    assert cleared.status_code == 200
    assert fake_plain.faults == Faults()
    assert bad.status_code == 400
    assert "explode" in bad.json()["errors"][0]["message"]
    assert graphql(client, fake_plain, WORKSPACE_QUERY).status_code == 200


# --- lifecycle ---------------------------------------------------------------------------


def test_url_requires_a_started_server():
    fake = FakePlain()
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.url
    with fake:
        assert re.match(r"^http://127\.0\.0\.1:\d+/graphql/v1$", fake.url)
    fake.stop()


def test_serve_prints_its_url_and_stops_on_sigterm():
    code = (
        "from backfill.fakeplain import ApiKey, serve\n"
        "serve(host='127.0.0.1', port=0, rate_limit=450, window_s=60.0,"
        " api_keys={'k': ApiKey()})\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(
            r"fake Plain listening on (http://127\.0\.0\.1:\d+/graphql/v1)\n", line
        )
        assert match, line
        response = httpx.post(
            match.group(1), json={"query": WORKSPACE_QUERY}, headers={"Authorization": "Bearer k"}
        )
        assert response.status_code == 200
        process.terminate()
        assert process.wait(timeout=5) == 0
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
