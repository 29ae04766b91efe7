"""What the fake Plain accepts beyond the schema, and the ``MutationError`` it answers.

The schema says which fields exist and their types; these rules are the rest of what Plain
checks: exactly one customer identifier, text and label lengths, component contents,
timezone-aware timestamps, valid emails, permissions and unique event ``externalId``s.
Each failed rule is a field error; a mutation's errors are answered together.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from backfill.fakeplain.keys import ApiKey

_REQUIRED_PERMISSIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "createCustomerEvent": ("customerEvent:create",),
    "createThreadEvent": ("threadEvent:create",),
    "upsertCustomer": ("customer:create", "customer:edit"),
}
_TEXT_LIMIT: Final = 10_000
_LABEL_LIMIT: Final = 500
_COPY_VALUE_LIMIT: Final = 1_000
_VALIDATION_MESSAGE: Final = "There was a validation error."
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_DUPLICATE_MESSAGE: Final = "An event with this external ID already exists."

FieldErrors = list[dict[str, str]]


def parse_timestamp(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    # Plain needs an absolute instant; a naive time would be ambiguous.
    return parsed if parsed.tzinfo is not None else None


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _field_error(path: str, message: str, error_type: str = "VALIDATION") -> dict[str, str]:
    return {"field": path, "message": message, "type": error_type}


def _mutation_error(
    message: str, *, error_type: str, code: str, field_errors: FieldErrors
) -> dict[str, Any]:
    return {"message": message, "type": error_type, "code": code, "fields": field_errors}


def validation_error(field_errors: FieldErrors) -> dict[str, Any]:
    return _mutation_error(
        _VALIDATION_MESSAGE,
        error_type="VALIDATION",
        code="input_validation",
        field_errors=field_errors,
    )


def not_found_error(path: str, message: str) -> dict[str, Any]:
    return _mutation_error(
        message,
        error_type="VALIDATION",
        code="not_found",
        field_errors=[_field_error(path, message, "NOT_FOUND")],
    )


def _check_length(
    value: str | None, path: str, *, minimum: int, maximum: int, errors: FieldErrors
) -> None:
    if value is None:
        errors.append(_field_error(path, "Required.", "REQUIRED"))
    elif not minimum <= len(value.encode("utf-16-le")) // 2 <= maximum:
        # JavaScript's .length, as Plain's server counts: UTF-16 code units.
        message = (
            f"Must be between {minimum} and {maximum} characters."
            if minimum
            else f"Must be at most {maximum} characters."
        )
        errors.append(_field_error(path, message))


def _exactly_one(
    value: Mapping[str, Any],
    path: str,
    errors: FieldErrors,
    message: str = "Exactly one field must be set.",
) -> str | None:
    """Return the one field of an input object that is set, else record an error."""
    chosen = [name for name, item in value.items() if item is not None]
    if len(chosen) != 1:
        errors.append(_field_error(path, message))
        return None
    return chosen[0]


def _either(value: Mapping[str, Any], current: str, deprecated: str) -> Any:
    return value.get(current) if value.get(current) is not None else value.get(deprecated)


def _check_text(value: Mapping[str, Any], at: str, errors: FieldErrors) -> None:
    _check_length(value.get("text"), f"{at}.text", minimum=1, maximum=_TEXT_LIMIT, errors=errors)


def _check_plain_text(value: Mapping[str, Any], at: str, errors: FieldErrors) -> None:
    text = value.get("plainText")
    _check_length(text, f"{at}.plainText", minimum=1, maximum=_TEXT_LIMIT, errors=errors)


def _check_link_button(value: Mapping[str, Any], at: str, errors: FieldErrors) -> None:
    url = _either(value, "linkButtonUrl", "url")
    if url is None:
        errors.append(_field_error(f"{at}.linkButtonUrl", "Required.", "REQUIRED"))
    elif not _is_http_url(url):
        errors.append(_field_error(f"{at}.linkButtonUrl", "Must be a valid URL."))
    label = _either(value, "linkButtonLabel", "label")
    _check_length(label, f"{at}.linkButtonLabel", minimum=0, maximum=_LABEL_LIMIT, errors=errors)


def _check_workflow_button(value: Mapping[str, Any], at: str, errors: FieldErrors) -> None:
    label = value.get("workflowButtonLabel")
    _check_length(
        label, f"{at}.workflowButtonLabel", minimum=0, maximum=_LABEL_LIMIT, errors=errors
    )
    identifier = value.get("workflowButtonWorkflowIdentifier") or {}
    _exactly_one(identifier, f"{at}.workflowButtonWorkflowIdentifier", errors)


def _check_spacer(value: Mapping[str, Any], at: str, errors: FieldErrors) -> None:
    if _either(value, "spacerSize", "size") is None:
        errors.append(_field_error(f"{at}.spacerSize", "Required.", "REQUIRED"))


def _check_badge(value: Mapping[str, Any], at: str, errors: FieldErrors) -> None:
    label = value.get("badgeLabel")
    _check_length(label, f"{at}.badgeLabel", minimum=0, maximum=_LABEL_LIMIT, errors=errors)


def _check_copy_button(value: Mapping[str, Any], at: str, errors: FieldErrors) -> None:
    copied = value.get("copyButtonValue")
    _check_length(
        copied, f"{at}.copyButtonValue", minimum=0, maximum=_COPY_VALUE_LIMIT, errors=errors
    )
    tooltip = value.get("copyButtonTooltipLabel")
    if tooltip is not None:
        path = f"{at}.copyButtonTooltipLabel"
        _check_length(tooltip, path, minimum=0, maximum=_LABEL_LIMIT, errors=errors)


def _check_date_time(value: Mapping[str, Any], at: str, errors: FieldErrors) -> None:
    try:
        datetime.fromisoformat(value.get("dateTimeIso8601") or "")
    except ValueError:
        errors.append(_field_error(f"{at}.dateTimeIso8601", "Must be an ISO 8601 date and time."))


def _check_user(value: Mapping[str, Any], at: str, errors: FieldErrors) -> None:
    _exactly_one(value.get("userIdentifier") or {}, f"{at}.userIdentifier", errors)


def _check_row(value: Mapping[str, Any], at: str, errors: FieldErrors) -> None:
    main = value.get("rowMainContent") or []
    if not main:
        errors.append(_field_error(f"{at}.rowMainContent", "Must contain at least one component."))
    for part in ("rowMainContent", "rowAsideContent"):
        for index, component in enumerate(value.get(part) or []):
            _check_component(component, f"{at}.{part}.{index}", errors)


_COMPONENT_CHECKS: Final[Mapping[str, Callable[[Mapping[str, Any], str, FieldErrors], None]]] = {
    "componentText": _check_text,
    "componentPlainText": _check_plain_text,
    "componentDivider": lambda value, at, errors: None,
    "componentLinkButton": _check_link_button,
    "componentWorkflowButton": _check_workflow_button,
    "componentSpacer": _check_spacer,
    "componentBadge": _check_badge,
    "componentCopyButton": _check_copy_button,
    "componentDateTime": _check_date_time,
    "componentUser": _check_user,
    "componentRow": _check_row,
}


def _check_component(component: Mapping[str, Any], path: str, errors: FieldErrors) -> None:
    kind = _exactly_one(component, path, errors)
    if kind is not None:
        _COMPONENT_CHECKS[kind](component[kind], f"{path}.{kind}", errors)


def event_input_errors(event: Mapping[str, Any]) -> FieldErrors:
    errors: FieldErrors = []
    if "customerIdentifier" in event:
        message = "Exactly one of customerId, emailAddress or externalId must be set."
        _exactly_one(event["customerIdentifier"], "customerIdentifier", errors, message)
    if not event["title"].strip():
        errors.append(_field_error("title", "Required.", "REQUIRED"))
    for index, component in enumerate(event["components"]):
        _check_component(component, f"components.{index}", errors)
    timestamp = event.get("timestamp")
    if timestamp is not None and parse_timestamp(timestamp) is None:
        message = "Must be an ISO 8601 date and time with a timezone, e.g. 2024-10-28T18:30:00Z."
        errors.append(_field_error("timestamp", message))
    return errors


def upsert_input_errors(upsert: Mapping[str, Any]) -> FieldErrors:
    """The field errors of an ``upsertCustomer`` input; empty when Plain would accept it."""
    errors: FieldErrors = []
    _exactly_one(upsert["identifier"], "identifier", errors)
    on_create = upsert["onCreate"]
    if not on_create["fullName"].strip():
        errors.append(_field_error("onCreate.fullName", "Required.", "REQUIRED"))
    email = on_create["email"]["email"].strip()
    if not email:
        errors.append(_field_error("onCreate.email.email", "Required.", "REQUIRED"))
    elif not _EMAIL.match(email):
        errors.append(_field_error("onCreate.email.email", "Must be a valid email."))
    return errors


def duplicate_error() -> dict[str, Any]:
    """The error for an event whose ``externalId`` the workspace already holds."""
    return _mutation_error(
        _DUPLICATE_MESSAGE,
        error_type="VALIDATION",
        code="input_validation",
        field_errors=[_field_error("externalId", _DUPLICATE_MESSAGE)],
    )


def forbidden(key: ApiKey, operation: str) -> dict[str, Any] | None:
    """The error for a mutation the key lacks a permission for, or None if it may run it."""
    missing = [p for p in _REQUIRED_PERMISSIONS[operation] if p not in key.permissions]
    if not missing:
        return None
    return _mutation_error(
        f"Missing permission {', '.join(missing)}",
        error_type="FORBIDDEN",
        code="forbidden",
        field_errors=[],
    )
