"""Plain's GraphQL documents, request bodies, and answers turned into `Answer`s (pure).

The sender does the HTTP; everything it needs to know about what Plain said lives
here, so error classification is unit-tested without a network.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal

from backfill.errors import AuthError
from backfill.models import Event, EventKind, Workspace

DEFAULT_API_URL: Final = "https://core-api.uk.plain.com/graphql/v1"

_ERROR_FIELDS: Final = "error { message type code fields { field message type } }"
CREATE_CUSTOMER_EVENT: Final = (
    "mutation createCustomerEvent($input: CreateCustomerEventInput!) {"
    " createCustomerEvent(input: $input) {"
    " customerEvent { id customerId } " + _ERROR_FIELDS + " } }"
)
CREATE_THREAD_EVENT: Final = (
    "mutation createThreadEvent($input: CreateThreadEventInput!) {"
    " createThreadEvent(input: $input) {"
    " threadEvent { id customerId } " + _ERROR_FIELDS + " } }"
)
UPSERT_CUSTOMER: Final = (
    "mutation upsertCustomer($input: UpsertCustomerInput!) {"
    " upsertCustomer(input: $input) { result customer { id } " + _ERROR_FIELDS + " } }"
)
PREFLIGHT: Final = "query preflight { myWorkspace { id name } myPermissions { permissions } }"

#: Per event kind: the document, its operation and the output field of a created event.
MUTATIONS: Final = {
    EventKind.CUSTOMER: (CREATE_CUSTOMER_EVENT, "createCustomerEvent", "customerEvent"),
    EventKind.THREAD: (CREATE_THREAD_EVENT, "createThreadEvent", "threadEvent"),
}

#: The permission each event kind needs.
PERMISSIONS: Final = {
    EventKind.CUSTOMER: "customerEvent:create",
    EventKind.THREAD: "threadEvent:create",
}
#: The permissions `upsertCustomer` needs.
UPSERT_PERMISSIONS: Final = ("customer:create", "customer:edit")

AnswerKind = Literal[
    "delivered", "already_existed", "rejected", "transient", "rate_limited", "auth"
]

_AUTH_CODES: Final = frozenset({"UNAUTHENTICATED", "FORBIDDEN"})
#: Statuses that say this request, as sent, will never be accepted.
_REFUSED_AS_SENT: Final = frozenset({400, 413, 422})
#: GraphQL error codes that say the request, as sent, will never be accepted.
_REFUSED_CODES: Final = frozenset(
    {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT", "BAD_REQUEST"}
)
_DUPLICATE_WORDS: Final = (
    "already exist",
    "duplicate",
    "unique",
    "already been used",
    "already in use",
)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request (or one mutation in it) came to."""

    kind: AnswerKind
    code: str = ""
    message: str = ""
    plain_event_id: str = ""
    plain_customer_id: str = ""
    wait_s: float = 0.0


def event_body(event: Event) -> dict[str, Any]:
    """The JSON body that creates `event` (a customer or a thread event)."""
    document, operation, _ = MUTATIONS[event.kind]
    return {
        "query": document,
        "variables": {"input": dict(event.input)},
        "operationName": operation,
    }


#: The operation name of a document with several event mutations.
BATCH_OPERATION: Final = "backfillEvents"
_INPUT_TYPES: Final = {
    EventKind.CUSTOMER: "CreateCustomerEventInput",
    EventKind.THREAD: "CreateThreadEventInput",
}
_SELECTIONS: Final = {
    EventKind.CUSTOMER: "customerEvent { id customerId } " + _ERROR_FIELDS,
    EventKind.THREAD: "threadEvent { id customerId } " + _ERROR_FIELDS,
}
_batch_documents: dict[tuple[EventKind, ...], str] = {}


def batch_document(kinds: Sequence[EventKind]) -> str:
    """One mutation document with an aliased mutation per event: `e0`, `e1`, ... on `$i0`, ...

    >>> print(batch_document([EventKind.CUSTOMER])[:61])
    mutation backfillEvents($i0: CreateCustomerEventInput!) { e0:
    """
    key = tuple(kinds)
    document = _batch_documents.get(key)
    if document is None:
        variables = ", ".join(f"$i{n}: {_INPUT_TYPES[kind]}!" for n, kind in enumerate(key))
        fields = " ".join(
            f"e{n}: {MUTATIONS[kind][1]}(input: $i{n}) {{ {_SELECTIONS[kind]} }}"
            for n, kind in enumerate(key)
        )
        document = f"mutation {BATCH_OPERATION}({variables}) {{ {fields} }}"
        if len(_batch_documents) < 4096:
            _batch_documents[key] = document
    return document


def batch_body(events: Sequence[Event]) -> dict[str, Any]:
    """The JSON body that creates several events in one request, each under its own alias."""
    return {
        "query": batch_document([event.kind for event in events]),
        "variables": {f"i{n}": dict(event.input) for n, event in enumerate(events)},
        "operationName": BATCH_OPERATION,
    }


def classify_batch(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    kinds: Sequence[EventKind],
    *,
    now: datetime | None = None,
) -> Answer | list[Answer]:
    """Classify the answer to `batch_body`: one Answer for the whole request, or one per event.

    An alias whose mutation raised (its data is null) takes the error whose path names it.
    """
    parsed = _json(body) if status == 200 else None
    data = parsed.get("data") if parsed is not None else None
    aliases = [f"e{n}" for n in range(len(kinds))]
    errors = parsed.get("errors") if parsed is not None else None
    by_alias: dict[str, Any] = {}
    for error in errors if isinstance(errors, list) else ():
        path = error.get("path") if isinstance(error, dict) else None
        if isinstance(path, list) and path and path[0] in aliases:
            by_alias.setdefault(path[0], error)
    answered = isinstance(data, dict) and any(data.get(alias) for alias in aliases)
    if not answered and not (isinstance(data, dict) and by_alias):
        # Nothing per event: the request as a whole was answered (or refused).
        result = classify_http(status, headers, body, now=now)
        if isinstance(result, Answer):
            return result
        data = result
    assert isinstance(data, dict)
    answers: list[Answer] = []
    for alias, kind in zip(aliases, kinds, strict=True):
        value = data.get(alias)
        if value is None and alias in by_alias:
            answers.append(_graphql_error(by_alias[alias], status))
        else:
            answers.append(classify_mutation(value, output_field=MUTATIONS[kind][2]))
    return answers


def classify_event(data: Mapping[str, Any], kind: EventKind) -> Answer:
    """Classify the `data` of an event mutation's response."""
    _, operation, output = MUTATIONS[kind]
    return classify_mutation(data.get(operation), output_field=output)


def upsert_body(customer: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body that upserts one customer (`UpsertCustomerInput`)."""
    return {
        "query": UPSERT_CUSTOMER,
        "variables": {"input": dict(customer)},
        "operationName": "upsertCustomer",
    }


def classify_upsert(data: Mapping[str, Any]) -> Answer:
    """Classify `upsertCustomer`'s output; a created or found customer is `delivered`."""
    result = data.get("upsertCustomer")
    if isinstance(result, dict) and not result.get("error"):
        customer = result.get("customer")
        if isinstance(customer, dict) and customer.get("id"):
            return Answer(
                "delivered",
                code=str(result.get("result") or ""),
                plain_customer_id=str(customer["id"]),
            )
    answer = classify_mutation(result, output_field="customer")
    # "Already exists" means nothing for an upsert: any other error is the customer's.
    return (
        Answer("rejected", answer.code, answer.message)
        if answer.kind == "already_existed"
        else answer
    )


def preflight_body() -> dict[str, Any]:
    return {"query": PREFLIGHT, "variables": {}, "operationName": "preflight"}


def classify_http(
    status: int, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
) -> Answer | dict[str, Any]:
    """Classify transport-level outcomes; return the GraphQL `data` when there is some.

    A returned dict is the response's `data` object, for `classify_mutation` to read.
    Whatever the body holds, the answer is an Answer or a dict: never an exception.
    """
    if status == 429:
        return Answer(
            "rate_limited",
            "RATE_LIMITED",
            "rate limit exceeded",
            wait_s=rate_limit_wait(headers, now),
        )
    if status in (401, 403):
        return Answer(
            "auth", _first_code(body) or f"HTTP_{status}", _first_message(body) or f"HTTP {status}"
        )
    if status >= 500 or status == 408:
        return Answer("transient", f"HTTP_{status}", _first_message(body) or f"HTTP {status}")
    parsed = _json(body)
    if parsed is None:
        if status in _REFUSED_AS_SENT:
            return Answer(
                "rejected", f"HTTP_{status}", f"HTTP {status} with a body that is not JSON"
            )
        # A proxy's error page or an empty body: nothing says the request itself was wrong.
        return Answer("transient", "BAD_RESPONSE", f"HTTP {status} with a body that is not JSON")
    errors = parsed.get("errors")
    data = parsed.get("data")
    if errors is not None and not isinstance(errors, list):
        return Answer("transient", "BAD_RESPONSE", "the response's errors are not a list")
    if errors and not (isinstance(data, dict) and data and all(data.values())):
        return _graphql_error(errors[0], status)
    if status >= 400:
        kind: AnswerKind = "rejected" if status in _REFUSED_AS_SENT else "transient"
        return Answer(kind, f"HTTP_{status}", f"HTTP {status} without data")
    if not isinstance(data, dict):
        return Answer("transient", "BAD_RESPONSE", f"HTTP {status} without data")
    return data


def classify_mutation(result: Any, *, output_field: str = "customerEvent") -> Answer:
    """Classify one mutation's output (`{customerEvent, error}`)."""
    if not isinstance(result, dict):
        return Answer("transient", "BAD_RESPONSE", "the response has no mutation result")
    error = result.get("error")
    if error:
        if not isinstance(error, dict):
            return Answer("transient", "BAD_RESPONSE", "the mutation error is not an object")
        return _mutation_error(error)
    created = result.get(output_field)
    if not isinstance(created, dict) or not created.get("id"):
        return Answer("transient", "BAD_RESPONSE", "the response has neither an event nor an error")
    return Answer(
        "delivered",
        plain_event_id=str(created["id"]),
        plain_customer_id=str(created.get("customerId") or ""),
    )


def parse_preflight(data: Mapping[str, Any]) -> Workspace:
    """Read the preflight query's `data`."""
    workspace = data.get("myWorkspace")
    workspace = workspace if isinstance(workspace, dict) else {}
    granted = data.get("myPermissions")
    permissions = granted.get("permissions") if isinstance(granted, dict) else None
    return Workspace(
        id=str(workspace.get("id") or ""),
        name=str(workspace.get("name") or ""),
        permissions=frozenset(str(p) for p in permissions or () if isinstance(p, str)),
    )


@dataclass(frozen=True, slots=True)
class Budget:
    """What Plain's `x-ratelimit-*` headers say about the current window."""

    limit: int
    remaining: int
    #: Seconds from the response's arrival until the window resets.
    reset_in_s: float


#: The local clock is trusted for `x-ratelimit-reset` unless it is this far from `Date`.
CLOCK_SKEW_S: Final = 2.0


def seconds_until_reset(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds until `x-ratelimit-reset`, or None when the header is missing or unreadable.

    The local clock is precise but may be wrong; the server's `Date` has whole seconds
    only. The local clock is used unless it is over `CLOCK_SKEW_S` away from `Date`.
    """
    reset = headers.get("x-ratelimit-reset")
    if not reset:
        return None
    try:
        reset_at = datetime.fromisoformat(reset.replace("Z", "+00:00"))
    except ValueError:
        return None
    if reset_at.tzinfo is None:
        reset_at = reset_at.replace(tzinfo=UTC)
    local_now = now or datetime.now(UTC)
    server_now = local_now
    date = headers.get("date")
    if date:
        try:
            server_now = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            pass
    if abs((server_now - local_now).total_seconds()) <= CLOCK_SKEW_S:
        server_now = local_now
    return max(0.0, (reset_at - server_now).total_seconds())


def read_budget(headers: Mapping[str, str], now: datetime | None = None) -> Budget | None:
    """The window's limit, what remains of it and when it resets; None without the headers."""
    try:
        limit = int(headers.get("x-ratelimit-limit", ""))
        remaining = int(headers.get("x-ratelimit-remaining", ""))
    except ValueError:
        return None
    reset_in = seconds_until_reset(headers, now)
    if reset_in is None or limit <= 0:
        return None
    return Budget(limit, max(0, remaining), reset_in)


def rate_limit_wait(headers: Mapping[str, str], now: datetime | None = None) -> float:
    """Seconds to wait after a 429: `Retry-After`, else until `x-ratelimit-reset`, else 1 s."""
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                moment = parsedate_to_datetime(retry_after)
                return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
            except (TypeError, ValueError):
                pass
    reset_in = seconds_until_reset(headers, now)
    return 1.0 if reset_in is None else reset_in


def _mutation_error(error: Mapping[str, Any]) -> Answer:
    code = str(error.get("code") or "")
    kind = str(error.get("type") or "")
    message = str(error.get("message") or "")
    raw_fields = error.get("fields")
    fields = [f for f in raw_fields if isinstance(f, dict)] if isinstance(raw_fields, list) else []
    details = "; ".join(f"{f.get('field')}: {f.get('message')}" for f in fields)
    full = f"{message} ({details})" if details else message
    if _is_duplicate(code, message, fields):
        return Answer("already_existed", code, full)
    if kind == "FORBIDDEN" or code == "forbidden":
        return Answer("auth", code or "forbidden", full)
    if kind == "INTERNAL" or code == "internal":
        return Answer("transient", code or "internal", full)
    return Answer("rejected", code or kind.lower() or "rejected", full)


def _is_duplicate(code: str, message: str, fields: list[dict[str, Any]]) -> bool:
    """Plain does not document the duplicate-externalId answer: recognise it robustly."""
    lowered_code = code.lower()
    if any(word in lowered_code for word in ("already_exist", "duplicate", "not_unique")):
        return True
    for field in fields:
        name = str(field.get("field") or "").lower()
        text = str(field.get("message") or "").lower()
        if name.endswith("externalid") and any(word in text for word in _DUPLICATE_WORDS):
            return True
    lowered = message.lower()
    return "external" in lowered and any(word in lowered for word in _DUPLICATE_WORDS)


def _graphql_error(error: Any, status: int) -> Answer:
    if not isinstance(error, dict):
        return Answer("transient", "BAD_RESPONSE", "a GraphQL error that is not an object")
    code = _code_of(error) or f"HTTP_{status}"
    message = str(error.get("message") or "")[:1000]
    if code in _AUTH_CODES:
        return Answer("auth", code, message)
    if code == "RATE_LIMITED":
        return Answer("rate_limited", code, message, wait_s=1.0)
    if code in _REFUSED_CODES:
        return Answer("rejected", code, message)
    # INTERNAL_SERVER_ERROR and anything unknown: retry, within the retry budget.
    return Answer("transient", code, message)


def _code_of(error: Mapping[str, Any]) -> str:
    extensions = error.get("extensions")
    return str(extensions.get("code") or "") if isinstance(extensions, dict) else ""


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _first_error(body: bytes) -> dict[str, Any]:
    parsed = _json(body) or {}
    errors = parsed.get("errors") or [{}]
    first = errors[0] if isinstance(errors, list) and errors else {}
    return first if isinstance(first, dict) else {}


def _first_code(body: bytes) -> str:
    return _code_of(_first_error(body))


def _first_message(body: bytes) -> str:
    return str(_first_error(body).get("message") or "")[:300]


def check_access(
    workspace: Workspace, *, kinds: Iterable[EventKind], upsert: bool, expect_workspace: str = ""
) -> None:
    """Refuse a key that writes to another workspace than expected, or lacks a permission
    the job needs (`AuthError`: nothing is sent)."""
    if expect_workspace and workspace.id != expect_workspace:
        raise AuthError(
            f"the API key writes to workspace {workspace.name!r} ({workspace.id}), not "
            f"{expect_workspace} as --expect-workspace requires; nothing was sent"
        )
    needed = {PERMISSIONS[kind] for kind in kinds}
    if upsert:
        needed |= set(UPSERT_PERMISSIONS)
    missing = sorted(needed - workspace.permissions)
    if missing:
        raise AuthError(
            f"the API key lacks the permission {', '.join(missing)} in workspace "
            f"{workspace.name!r} ({workspace.id}); grant it to the key's machine user; "
            "nothing was sent"
        )
