"""Parsing the mapping file: TOML in, a checked `MappingSpec` out.

Every table and key is checked here, at load time: unknown keys (with the closest
known one), required fields, component types, enum values (sizes, colours) against
Plain's schema, and the policy for values too long for Plain. Errors name the file
and the key.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backfill import plain_enums
from backfill.errors import MappingError
from backfill.ids import EPOCH_UNITS, KEY_TYPES, NAMESPACE_PATTERN
from backfill.mapping.components import COMPONENTS, ROW, FieldSpec, Policy
from backfill.mapping.spec import (
    ComponentRule,
    CustomerSpec,
    KeyColumn,
    MappingSpec,
    SourceSpec,
    suggest,
)

#: Who the customer is: mapping key -> CustomerIdentifierInput field.
CUSTOMER_IDENTIFIERS: Final = {
    "email": "emailAddress",
    "external_id": "externalId",
    "customer_id": "customerId",
}


def load_mapping(path: str | Path) -> MappingSpec:
    """Read and check a mapping file.

    >>> spec = load_mapping("data/mapping.toml")  # doctest: +SKIP
    >>> spec.namespace
    'acme-activity'
    """
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise MappingError(f"cannot read the mapping file ({exc.strerror})", file=file) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MappingError(f"not valid TOML: {exc}", file=file) from None
    return parse_mapping(data, file=file)


_TOP_KEYS: Final = {
    "title",
    "customer",
    "thread",
    "timestamp",
    "external_id",
    "components",
    "limits",
    "source",
}


def parse_mapping(data: Mapping[str, Any], *, file: str = "mapping") -> MappingSpec:
    """Check a parsed mapping document and return its spec (pure)."""
    reader = _Reader(file)
    reader.only(data, "", _TOP_KEYS)
    title = reader.template(data, "title")
    customer = _customer(reader, data.get("customer"))
    thread_column = ""
    if "thread" in data:
        thread = reader.table(data, "thread")
        reader.only(thread, "thread", {"id"})
        thread_column = reader.string(thread, "id", where="thread")
    if customer is None and not thread_column:
        raise MappingError(
            "give [customer] (customer events) or [thread] (thread events), or both",
            file=file,
            key="customer",
        )

    timestamp = reader.table(data, "timestamp")
    reader.only(timestamp, "timestamp", {"column", "timezone", "unit"})
    timestamp_column = reader.string(timestamp, "column", where="timestamp")
    timezone = reader.string(timestamp, "timezone", where="timestamp", default="UTC")
    unit = reader.string(timestamp, "unit", where="timestamp", default="")
    if unit and unit not in EPOCH_UNITS:
        raise MappingError(
            f"unit must be one of {', '.join(EPOCH_UNITS)} (a Unix time in seconds, "
            f"milliseconds or microseconds), not {unit!r}",
            file=file,
            key="timestamp.unit",
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(
            f"unknown timezone {timezone!r} (use an IANA name such as 'UTC' or 'Europe/Paris')",
            file=file,
            key="timestamp.timezone",
        ) from None

    ident = reader.table(data, "external_id")
    reader.only(ident, "external_id", {"namespace", "key", "template"})
    namespace = reader.string(ident, "namespace", where="external_id")
    if not NAMESPACE_PATTERN.match(namespace):
        raise MappingError(
            "namespace must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit",
            file=file,
            key="external_id.namespace",
        )
    keys = _keys(reader, ident)
    id_template = str(ident.get("template", ""))
    if bool(keys) == bool(id_template):
        raise MappingError(
            "give either key (the key columns) or template, not both",
            file=file,
            key="external_id",
        )

    source = _source(reader, data.get("source"), file=file)

    default_policy: Policy = "reject"
    if "limits" in data:
        limits = reader.table(data, "limits")
        reader.only(limits, "limits", {"too_long"})
        default_policy = reader.policy(limits, "too_long", where="limits")

    raw_components = data.get("components", [])
    if not isinstance(raw_components, list):
        raise MappingError(
            "must be an array of tables ([[components]])", file=file, key="components"
        )
    components = tuple(
        _component(reader, f"components[{i}]", c, default_policy, in_row=False)
        for i, c in enumerate(raw_components)
    )

    digest = hashlib.sha256(
        json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()[:16]
    return MappingSpec(
        file=file,
        title=title,
        customer=customer,
        thread_column=thread_column,
        timestamp_column=timestamp_column,
        timezone=timezone,
        namespace=namespace,
        keys=keys,
        id_template=id_template,
        components=components,
        hash=digest,
        timestamp_unit=unit,
        source=source,
    )


def _source(reader: _Reader, raw: Any, *, file: str) -> SourceSpec:
    if raw is None:
        return SourceSpec()
    if not isinstance(raw, dict):
        raise MappingError("must be a table ([source])", file=file, key="source")
    reader.only(raw, "source", {"delimiter", "quote", "columns", "null"})
    delimiter = reader.string(raw, "delimiter", where="source", default=",")
    quote = reader.string(raw, "quote", where="source", default='"')
    for name, value in (("delimiter", delimiter), ("quote", quote)):
        if len(value) != 1 or value in "\r\n":
            raise MappingError(
                "must be one character (\\t for a tab)", file=file, key=f"source.{name}"
            )
    if delimiter == quote:
        raise MappingError("the delimiter and the quote must differ", file=file, key="source")
    columns = _strings(raw, "columns", file=file)
    if len(set(columns)) != len(columns):
        raise MappingError("a column name appears twice", file=file, key="source.columns")
    return SourceSpec(delimiter, quote, columns, _strings(raw, "null", file=file))


def _strings(raw: Mapping[str, Any], key: str, *, file: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise MappingError("must be a list of non-empty strings", file=file, key=f"source.{key}")
    return tuple(value)


def _customer(reader: _Reader, raw: Any) -> CustomerSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise MappingError("must be a table", file=reader.file, key="customer")
    reader.only(raw, "customer", {*CUSTOMER_IDENTIFIERS, "identify_by", "full_name"})
    columns = {k: reader.string(raw, k, where="customer") for k in CUSTOMER_IDENTIFIERS if k in raw}
    if not columns:
        raise MappingError(
            "give the column naming the customer: email, external_id or customer_id",
            file=reader.file,
            key="customer",
        )
    by = reader.string(raw, "identify_by", where="customer", default="")
    if not by:
        if len(columns) > 1:
            raise MappingError(
                f"several identifier columns ({', '.join(columns)}): say which one identifies "
                "the customer with identify_by",
                file=reader.file,
                key="customer.identify_by",
            )
        by = next(iter(columns))
    if by not in columns:
        raise MappingError(
            f'identify_by = {by!r} names no column here (give {by} = "<column>")',
            file=reader.file,
            key="customer.identify_by",
        )
    return CustomerSpec(
        identify_field=CUSTOMER_IDENTIFIERS[by],
        identify_column=columns[by],
        email_column=columns.get("email", ""),
        external_id_column=columns.get("external_id", ""),
        full_name_column=reader.string(raw, "full_name", where="customer", default=""),
    )


def _keys(reader: _Reader, ident: Mapping[str, Any]) -> tuple[KeyColumn, ...]:
    raw = ident.get("key", [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise MappingError("must be a list of columns", file=reader.file, key="external_id.key")
    keys = []
    for i, item in enumerate(raw):
        where = f"external_id.key[{i}]"
        if isinstance(item, str):
            item = {"column": item}
        if not isinstance(item, dict):
            raise MappingError(
                "must be a column name or {column, type}", file=reader.file, key=where
            )
        reader.only(item, where, {"column", "type"})
        column = reader.string(item, "column", where=where)
        key_type = reader.string(item, "type", where=where, default="string")
        if key_type not in KEY_TYPES:
            raise MappingError(
                f"unknown key type {key_type!r} (one of {', '.join(KEY_TYPES)})",
                file=reader.file,
                key=f"{where}.type",
            )
        keys.append(KeyColumn(column, key_type))
    return tuple(keys)


def _component(
    reader: _Reader, where: str, raw: Any, default_policy: Policy, *, in_row: bool
) -> ComponentRule:
    if not isinstance(raw, dict):
        raise MappingError("must be a table", file=reader.file, key=where)
    type_name = reader.string(raw, "type", where=where)
    spec = COMPONENTS.get(type_name)
    allowed_types = [t for t in COMPONENTS if not (in_row and t == ROW)]
    if spec is None or type_name not in allowed_types:
        inside = " inside a row" if in_row and type_name == ROW else ""
        raise MappingError(
            f"unknown component type {type_name!r}{inside}{suggest(type_name, allowed_types)} "
            f"(one of {', '.join(allowed_types)})",
            file=reader.file,
            key=f"{where}.type",
        )
    when = reader.string(raw, "when", where=where, default="")
    if type_name == ROW:
        reader.only(raw, where, {"type", "when", "main", "aside", "too_long"})
        policy = reader.policy(raw, "too_long", where=where, default=default_policy)
        parts = {}
        for side in ("main", "aside"):
            items = raw.get(side, [])
            if not isinstance(items, list) or (side == "main" and not items):
                raise MappingError(
                    "a row needs main = a non-empty list of components"
                    if side == "main"
                    else "aside must be a list of components",
                    file=reader.file,
                    key=f"{where}.{side}",
                )
            parts[side] = tuple(
                _component(reader, f"{where}.{side}[{i}]", item, policy, in_row=True)
                for i, item in enumerate(items)
            )
        return ComponentRule(ROW, where, (), when, (), parts["main"], parts["aside"])
    fields = {f.name: f for f in spec.fields}
    reader.only(raw, where, {"type", "when", "too_long", *fields})
    for name, field in fields.items():
        if field.required and name not in raw:
            raise MappingError(
                f"a {type_name} component needs {name!r}",
                file=reader.file,
                key=f"{where}.{name}",
            )
    for group in spec.one_of:
        given = [name for name in group if name in raw]
        if len(given) != 1:
            raise MappingError(
                f"a {type_name} component needs exactly one of {' or '.join(group)}",
                file=reader.file,
                key=f"{where}.{group[0]}",
            )
    values = []
    for name, field in fields.items():
        if name not in raw:
            continue
        value = reader.string(raw, name, where=where)
        if field.kind == "enum":
            allowed = plain_enums.ENUMS[field.enum]
            if value not in allowed:
                raise MappingError(
                    f"{value!r} is not a {field.enum}{suggest(value, allowed)} "
                    f"(one of {', '.join(sorted(allowed))})",
                    file=reader.file,
                    key=f"{where}.{name}",
                )
        values.append((name, value))
    policies = _policies(reader, raw, where, fields, default_policy)
    return ComponentRule(type_name, where, tuple(values), when, policies)


def _policies(
    reader: _Reader,
    raw: Mapping[str, Any],
    where: str,
    fields: Mapping[str, FieldSpec],
    default: Policy,
) -> tuple[tuple[str, Policy], ...]:
    """What to do with each limited field that is too long: `too_long = "truncate"` or per field."""
    limited = [name for name, f in fields.items() if f.max_len is not None]
    given = raw.get("too_long")
    if given is None or isinstance(given, str):
        policy = reader.policy(raw, "too_long", where=where, default=default)
        return tuple((name, policy) for name in limited)
    if not isinstance(given, dict):
        raise MappingError(
            'must be "reject", "truncate" or a table of them per field',
            file=reader.file,
            key=f"{where}.too_long",
        )
    reader.only(given, f"{where}.too_long", set(limited))
    return tuple(
        (name, reader.policy(given, name, where=f"{where}.too_long", default=default))
        for name in limited
    )


@dataclass(frozen=True, slots=True)
class _Reader:
    """Typed access to TOML tables with errors that name the file and key."""

    file: str

    def only(self, table: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                name = f"{where}.{key}" if where else key
                raise MappingError(
                    f"unknown key{suggest(key, sorted(allowed))} "
                    f"(allowed: {', '.join(sorted(allowed))})",
                    file=self.file,
                    key=name,
                )

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key)
        if not isinstance(value, dict):
            raise MappingError(f"missing table [{key}]", file=self.file, key=key)
        return value

    def string(
        self, data: Mapping[str, Any], key: str, *, where: str = "", default: str | None = None
    ) -> str:
        name = f"{where}.{key}" if where else key
        value = data.get(key, default)
        if value is None:
            raise MappingError("is required", file=self.file, key=name)
        if not isinstance(value, str):
            raise MappingError("must be a string", file=self.file, key=name)
        return value

    def template(self, data: Mapping[str, Any], key: str) -> str:
        value = self.string(data, key)
        if not value.strip():
            raise MappingError("must not be empty", file=self.file, key=key)
        return value

    def policy(
        self, data: Mapping[str, Any], key: str, *, where: str, default: Policy = "reject"
    ) -> Policy:
        value = self.string(data, key, where=where, default=default)
        if value == "reject":
            return "reject"
        if value == "truncate":
            return "truncate"
        raise MappingError(
            f"{value!r} is not a policy (reject or truncate)", file=self.file, key=f"{where}.{key}"
        )
