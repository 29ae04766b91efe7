"""The in-memory Plain: workspaces, customers and events, and the resolvers that use them.

Every customer exists unless configured unknown (its id derived from its identifier), as
does every ``th_`` thread; customers upserted here are found by any of their identifiers.
A workspace refuses a second event with the same ``externalId``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLResolveInfo

from backfill.fakeplain.ids import EventIds, date_time, derived_id
from backfill.fakeplain.keys import ApiKey
from backfill.fakeplain.rules import (
    duplicate_error,
    event_input_errors,
    forbidden,
    not_found_error,
    parse_timestamp,
    upsert_input_errors,
    validation_error,
)
from backfill.fakeplain.stats import Counters


@dataclass(slots=True)
class _Workspace:
    """What one workspace holds: its events' ``externalId``s and upserted customers."""

    event_external_ids: set[str] = field(default_factory=set)
    # (identifier kind, normalised value) -> customer record, for customers upserted here.
    customers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


class Store:
    """Workspaces, customers, events and counters. Callers hold ``FakePlain``'s lock."""

    def __init__(self, *, workspace_name: str, unknown_customers: Collection[str]) -> None:
        self.workspace_name = workspace_name
        self._unknown_customers = frozenset(unknown_customers)
        self._unknown_emails = frozenset(value.lower() for value in unknown_customers)
        self._event_ids = EventIds()
        self.counters = Counters()
        self.workspaces: dict[str, _Workspace] = {}

    def reset(self) -> None:
        """Forget counters, events and customers."""
        self.counters = Counters()
        self.workspaces = {}

    def root(self, key: ApiKey, *, apply: bool) -> dict[str, Callable[..., Any]]:
        """Root resolvers for one request; with ``apply=False`` mutations only count."""

        def my_workspace(info: GraphQLResolveInfo[Any]) -> dict[str, str]:
            self._count(info)
            name = self.workspace_name
            return {"id": key.workspace_id, "name": name, "publicName": name}

        def my_permissions(info: GraphQLResolveInfo[Any]) -> dict[str, list[str]]:
            self._count(info)
            return {"permissions": sorted(key.permissions)}

        def create_event(info: GraphQLResolveInfo[Any], input: dict[str, Any]) -> dict[str, Any]:
            self._count(info)
            external_id = input.get("externalId") or ""
            attempts = self.counters.create_attempts
            attempts[external_id] = attempts.get(external_id, 0) + 1
            if not apply:
                return {}
            return self._create_event(key, info.field_name, input)

        def upsert_customer(info: GraphQLResolveInfo[Any], input: dict[str, Any]) -> dict[str, Any]:
            self._count(info)
            return self._upsert_customer(key, input) if apply else {}

        return {
            "myWorkspace": my_workspace,
            "myPermissions": my_permissions,
            "createCustomerEvent": create_event,
            "createThreadEvent": create_event,
            "upsertCustomer": upsert_customer,
        }

    def _count(self, info: GraphQLResolveInfo[Any]) -> None:
        by_operation = self.counters.by_operation
        by_operation[info.field_name] = by_operation.get(info.field_name, 0) + 1

    def _workspace(self, workspace_id: str) -> _Workspace:
        return self.workspaces.setdefault(workspace_id, _Workspace())

    def _customer_id(self, workspace_id: str, identifier: Mapping[str, Any]) -> str | None:
        """Return the id of the customer an identifier names, or None if there is none.

        Customers upserted here are found first; otherwise every customer exists unless
        listed in ``unknown_customers``, with an id derived from its identifier.
        """
        kind, value = _chosen(identifier)
        registered = self._workspace(workspace_id).customers.get(_customer_key(kind, value))
        if registered is not None:
            return str(registered["id"])
        if kind == "customerId":
            return value if value.startswith("c_") and len(value) > 2 else None
        unknown = (
            value.lower() in self._unknown_emails
            if kind == "emailAddress"
            else value in self._unknown_customers
        )
        return None if unknown else _customer_derived_id(workspace_id, kind, value)

    def _create_event(self, key: ApiKey, operation: str, event: dict[str, Any]) -> dict[str, Any]:
        output_field = "customerEvent" if operation == "createCustomerEvent" else "threadEvent"
        refused = forbidden(key, operation)
        if refused is not None:
            return {output_field: None, "error": refused}
        field_errors = event_input_errors(event)
        if field_errors:
            return {output_field: None, "error": validation_error(field_errors)}
        if output_field == "customerEvent":
            customer_id = self._customer_id(key.workspace_id, event["customerIdentifier"])
            if customer_id is None:
                error = not_found_error("customerIdentifier", "Customer not found")
                return {output_field: None, "error": error}
            thread_id = None
        else:
            thread_id = event["threadId"]
            if not (thread_id.startswith("th_") and len(thread_id) > 3):
                return {
                    output_field: None,
                    "error": not_found_error("threadId", "Thread not found"),
                }
            customer_id = derived_id("c_", f"{key.workspace_id}:thread:{thread_id}")
        workspace = self._workspace(key.workspace_id)
        external_id = event.get("externalId") or ""
        if external_id and external_id in workspace.event_external_ids:
            return {output_field: None, "error": duplicate_error()}
        timestamp = event.get("timestamp")
        created_at = parse_timestamp(timestamp) if timestamp else None
        created = {
            "id": self._event_ids.new(),
            "customerId": customer_id,
            "threadId": thread_id,
            "title": event["title"],
            "createdAt": date_time(created_at or datetime.now(UTC)),
        }
        if external_id:
            workspace.event_external_ids.add(external_id)
        creations = self.counters.creations
        creations[external_id] = creations.get(external_id, 0) + 1
        self.counters.events.append(
            {
                "id": created["id"],
                "externalId": event.get("externalId"),
                "title": event["title"],
                "timestamp": timestamp,
                "customerIdentifier": event.get("customerIdentifier"),
                "threadId": thread_id,
                "components": event["components"],
                "customerId": customer_id,
                "createdAt": created["createdAt"]["iso8601"],
            }
        )
        return {output_field: created, "error": None}

    def _upsert_customer(self, key: ApiKey, upsert: dict[str, Any]) -> dict[str, Any]:
        refused = forbidden(key, "upsertCustomer")
        if refused is not None:
            return {"result": None, "customer": None, "error": refused}
        field_errors = upsert_input_errors(upsert)
        if field_errors:
            return {"result": None, "customer": None, "error": validation_error(field_errors)}
        kind, value = _chosen(upsert["identifier"])
        on_create = upsert["onCreate"]
        if kind == "customerId" and not value.startswith("c_"):
            error = not_found_error("identifier.customerId", "Customer not found")
            return {"result": None, "customer": None, "error": error}
        customers = self._workspace(key.workspace_id).customers
        customer = customers.get(_customer_key(kind, value))
        if customer is None:
            customer_id = (
                value
                if kind == "customerId"
                else _customer_derived_id(key.workspace_id, kind, value)
            )
            external_id = on_create.get("externalId") or (value if kind == "externalId" else None)
            customer = {
                "id": customer_id,
                "externalId": external_id,
                "fullName": on_create["fullName"],
                "email": dict(on_create["email"]),
            }
            # Register every way an event may name this customer, so events find it.
            customers[_customer_key(kind, value)] = customer
            customers[_customer_key("emailAddress", customer["email"]["email"])] = customer
            customers[_customer_key("customerId", customer_id)] = customer
            if external_id:
                customers[_customer_key("externalId", external_id)] = customer
            return {"result": "CREATED", "customer": customer, "error": None}
        changed = _apply_update(customer, upsert["onUpdate"])
        return {"result": "UPDATED" if changed else "NOOP", "customer": customer, "error": None}


def _chosen(identifier: Mapping[str, Any]) -> tuple[str, Any]:
    """The one field of a (validated) identifier that is set, and its value."""
    return next((k, v) for k, v in identifier.items() if v is not None)


def _customer_key(kind: str, value: str) -> tuple[str, str]:
    # Plain matches email addresses case-insensitively.
    return (kind, value.lower() if kind == "emailAddress" else value)


def _customer_derived_id(workspace_id: str, kind: str, value: str) -> str:
    return derived_id("c_", f"{workspace_id}:{kind}:{_customer_key(kind, value)[1]}")


def _apply_update(customer: dict[str, Any], on_update: Mapping[str, Any]) -> bool:
    before = json.dumps(customer, sort_keys=True)
    if on_update.get("fullName") is not None:
        customer["fullName"] = on_update["fullName"]["value"]
    if on_update.get("externalId") is not None:
        customer["externalId"] = on_update["externalId"]["value"]
    if on_update.get("email") is not None:
        customer["email"] = dict(on_update["email"])
    return json.dumps(customer, sort_keys=True) != before
