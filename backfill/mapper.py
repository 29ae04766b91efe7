"""SourceRow -> externalId, and SourceRow -> Event | Invalid (pure).

`event_id` reads only the key columns (or renders only the id template), so the
planner can decide what needs sending before any other template is rendered.
`map_row` renders the rest and applies Plain's documented limits offline, so a row
that maps is one Plain will not refuse for its shape.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from backfill.errors import MappingError
from backfill.ids import (
    KeyValueError,
    external_id,
    format_utc,
    normalise_key,
    parse_epoch,
    parse_timestamp,
)
from backfill.mapping import (
    COMPONENTS,
    ROW,
    ComponentRule,
    Condition,
    FieldSpec,
    MappingSpec,
    Policy,
    Template,
    compile_condition,
    compile_template,
    context,
    environment,
)
from backfill.models import Event, EventKind, Invalid, RowProblem, SourceRow

MAX_EXTERNAL_ID = 255
_ROW_GQL = COMPONENTS[ROW].gql
_SIMPLE_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(?::([0-9]{1,5}))?(?:[/?#][^\s]*)?\Z")
ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class _Part:
    field: FieldSpec
    value: str
    template: Template | None
    policy: Policy
    #: Required by the schema, or the one given of a one-of pair (workflow id or key).
    required: bool


@dataclass(frozen=True, slots=True)
class _Component:
    gql: str
    key: str
    parts: tuple[_Part, ...]
    when: Condition | None
    main: tuple[_Component, ...] = ()
    aside: tuple[_Component, ...] = ()


@dataclass(frozen=True, slots=True)
class Mapper:
    """A mapping with every template compiled once."""

    spec: MappingSpec
    title: Template
    id_template: Template | None
    components: tuple[_Component, ...]
    tz: ZoneInfo


def compile_mapper(spec: MappingSpec) -> Mapper:
    """Compile every template and expression of `spec` once."""
    env = environment()
    file = spec.file

    def component(rule: ComponentRule) -> _Component:
        spec_ = COMPONENTS[rule.type]
        fields = {f.name: f for f in spec_.fields}
        chosen = {name for group in spec_.one_of for name in group}
        parts = tuple(
            _Part(
                fields[name],
                value,
                None
                if fields[name].kind == "enum"
                else compile_template(env, value, file=file, key=f"{rule.key}.{name}"),
                rule.policy(name),
                fields[name].required or name in chosen,
            )
            for name, value in rule.values
        )
        when = (
            compile_condition(env, rule.when, file=file, key=f"{rule.key}.when")
            if rule.when
            else None
        )
        return _Component(
            COMPONENTS[rule.type].gql,
            rule.key,
            parts,
            when,
            tuple(component(r) for r in rule.main),
            tuple(component(r) for r in rule.aside),
        )

    id_template = (
        compile_template(env, spec.id_template, file=file, key="external_id.template")
        if spec.id_template
        else None
    )
    if id_template is not None and id_template.globals_read:
        names = ", ".join(sorted(id_template.globals_read))
        raise MappingError(
            f"the externalId template reads {names}, a Jinja global that may differ between "
            f"runs; read a column of that name as row['{min(id_template.globals_read)}']",
            file=file,
            key="external_id.template",
        )
    return Mapper(
        spec=spec,
        title=compile_template(env, spec.title, file=file, key="title"),
        id_template=id_template,
        components=tuple(component(rule) for rule in spec.components),
        tz=spec.tz,
    )


class _RowInvalid(Exception):
    def __init__(self, problem: RowProblem) -> None:
        self.problem = problem


def event_id(mapper: Mapper, row: SourceRow) -> str | RowProblem:
    """The row's externalId from its key columns alone, or why it has none."""
    try:
        return _event_id(mapper, row)
    except Exception as exc:  # bad input never crashes the job: the row gets the reason
        return RowProblem("unreadable_value", f"{type(exc).__name__}: {exc}"[:300])


def event_ids(
    mapper: Mapper, rows: Sequence[SourceRow]
) -> list[tuple[SourceRow, str | RowProblem]]:
    """Each row with its externalId, or why it has none (its own problem first)."""
    pairs: list[tuple[SourceRow, str | RowProblem]] = []
    for row in rows:
        if row.problem is not None:
            pairs.append((row, row.problem))
            continue
        try:
            pairs.append((row, _event_id(mapper, row)))
        except Exception as exc:  # bad input never crashes the job: the row gets the reason
            pairs.append(
                (row, RowProblem("unreadable_value", f"{type(exc).__name__}: {exc}"[:300]))
            )
    return pairs


def _event_id(mapper: Mapper, row: SourceRow) -> str | RowProblem:
    spec = mapper.spec
    if mapper.id_template is not None:
        for column in sorted(mapper.id_template.columns):
            if not row.values.get(column, "").strip():
                # An empty part would make different rows share one id.
                return RowProblem(
                    "bad_key", f"column {column!r} of the externalId template is empty", column
                )
        try:
            value = _render(mapper.id_template, context(row.values)).strip()
        except _RowInvalid as exc:
            return exc.problem
        if not value:
            return RowProblem("empty_id", "the externalId template rendered empty")
        if len(value) > MAX_EXTERNAL_ID:
            return RowProblem("id_too_long", f"the externalId is over {MAX_EXTERNAL_ID} characters")
        return value
    normalised = []
    for key in spec.keys:
        try:
            normalised.append(normalise_key(row.values[key.column], key.type, mapper.tz))
        except KeyValueError as exc:
            return RowProblem(
                "bad_key", f"key column {key.column!r} ({key.type}): {exc}", key.column
            )
    return external_id(spec.namespace, normalised)


def map_row(
    mapper: Mapper, row: SourceRow, external_id: str, *, hashed: bool = True, upsert: bool = True
) -> Event | Invalid:
    """Render one row into the `input` of its Plain mutation, or say why it cannot be.

    `hashed=False` leaves `payload_hash` empty and `upsert=False` leaves out the
    customer upsert, for checks that use neither.

    >>> map_row(mapper, row, "acme_...").input["title"]  # doctest: +SKIP
    'Plan upgraded'
    """
    if row.problem is not None:
        return Invalid(row.source, row.position, row.problem, external_id)
    try:
        return _Build(mapper, row).event(external_id, hashed=hashed, upsert=upsert)
    except _RowInvalid as exc:
        return Invalid(row.source, row.position, exc.problem, external_id)
    except Exception as exc:  # bad input never crashes the job: the row gets the reason
        problem = RowProblem("unreadable_value", f"{type(exc).__name__}: {exc}"[:300])
        return Invalid(row.source, row.position, problem, external_id)


def payload_hash(payload: Mapping[str, Any]) -> str:
    """A stable hash of what is sent, to report rows whose mapping would now differ."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _Build:
    """One row's rendering; collects notes such as which fields were truncated."""

    def __init__(self, mapper: Mapper, row: SourceRow) -> None:
        self.mapper = mapper
        self.row = row
        self.values = row.values
        self.ctx = context(row.values)
        self.truncated: list[str] = []

    def event(self, ext_id: str, *, hashed: bool, upsert: bool) -> Event:
        spec = self.mapper.spec
        values = self.row.values
        title = _render(self.mapper.title, self.ctx)
        if not title.strip():
            raise _RowInvalid(_problem("empty", "the title rendered empty", self.mapper.title))
        try:
            text = values[spec.timestamp_column]
            unit = spec.timestamp_unit
            when = parse_epoch(text, unit) if unit else parse_timestamp(text, self.mapper.tz)
        except KeyValueError as exc:
            raise _RowInvalid(
                RowProblem("bad_timestamp", str(exc), spec.timestamp_column)
            ) from None
        timestamp = format_utc(when, digits=3)
        components = [c for c in (self.component(c) for c in self.mapper.components) if c]
        thread_id = values[spec.thread_column].strip() if spec.thread_column else ""
        payload: dict[str, Any]
        customer_key, upserting, upsert_problem = "", None, ""
        if thread_id:
            kind = EventKind.THREAD
            payload = {"threadId": thread_id}
        else:
            kind = EventKind.CUSTOMER
            identifier = self.customer()
            payload = {"customerIdentifier": identifier}
            ((field, value),) = identifier.items()
            # Plain matches emails case-insensitively: so does the one-upsert-per-customer key.
            customer_key = f"{field}:{value.lower() if field == 'emailAddress' else value}"
            if upsert:
                upserting, upsert_problem = self.upsert(identifier)
        payload |= {
            "externalId": ext_id,
            "title": title,
            "components": components,
            "timestamp": timestamp,
        }
        note = f"truncated: {', '.join(self.truncated)}" if self.truncated else ""
        return Event(
            external_id=ext_id,
            kind=kind,
            input=payload,
            payload_hash=payload_hash(payload) if hashed else "",
            source=self.row.source,
            position=self.row.position,
            timestamp=timestamp,
            note=note,
            customer=customer_key,
            upsert=upserting,
            upsert_problem=upsert_problem,
        )

    def upsert(self, identifier: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
        """The `UpsertCustomerInput` that creates this row's customer if it is missing.

        Existing customers are left as they are (`onUpdate` is empty): a backfill adds
        history, it does not rewrite people.
        """
        customer = self.mapper.spec.customer
        if customer is None or not (customer.email_column and customer.full_name_column):
            return None, "the mapping's [customer] needs email and full_name columns to upsert"
        values = self.row.values
        email = values[customer.email_column].strip()
        name = values[customer.full_name_column].strip()
        if not email or "@" not in email:
            return None, f"no usable email in column {customer.email_column!r}"
        if not name:
            return None, f"the full name column {customer.full_name_column!r} is empty"
        on_create: dict[str, Any] = {
            "fullName": name,
            "email": {"email": email, "isVerified": False},
        }
        if customer.external_id_column and values[customer.external_id_column].strip():
            on_create["externalId"] = values[customer.external_id_column].strip()
        return {"identifier": identifier, "onCreate": on_create, "onUpdate": {}}, ""

    def customer(self) -> dict[str, str]:
        spec = self.mapper.spec
        customer = spec.customer
        if customer is None:
            raise _RowInvalid(
                RowProblem(
                    "missing_thread",
                    "the thread id is empty (the mapping has no [customer])",
                    spec.thread_column,
                )
            )
        value = self.row.values[customer.identify_column].strip()
        if not value:
            raise _RowInvalid(
                RowProblem(
                    "missing_customer", "the customer column is empty", customer.identify_column
                )
            )
        if customer.identify_field == "emailAddress" and "@" not in value:
            raise _RowInvalid(
                RowProblem(
                    "bad_customer",
                    f"not an email address: {value[:80]!r}",
                    customer.identify_column,
                )
            )
        return {customer.identify_field: value}

    def component(self, comp: _Component) -> dict[str, Any] | None:
        if comp.when is not None:
            try:
                keep = comp.when.test(self.ctx)
            except Exception as exc:  # a template error is the row's problem, never a crash
                raise _RowInvalid(
                    RowProblem("template", f"{comp.when.key}: {exc}", _only(comp.when.columns))
                ) from None
            if not keep:
                return None
        if comp.gql == _ROW_GQL:
            main = [c for c in (self.component(c) for c in comp.main) if c]
            if not main:
                raise _RowInvalid(
                    RowProblem("empty_row", f"{comp.key}.main has no component left to show")
                )
            aside = [c for c in (self.component(c) for c in comp.aside) if c]
            return {comp.gql: {"rowMainContent": main, "rowAsideContent": aside}}
        fields: dict[str, Any] = {}
        for part in comp.parts:
            field = part.field
            if part.template is None:
                _put(fields, field.gql, part.value)
                continue
            bare = part.template.column
            text = self.values[bare] if bare else _render(part.template, self.ctx)
            if not text or text.isspace():
                if part.required:
                    raise _RowInvalid(
                        _problem("empty", f"{part.template.key} rendered empty", part.template)
                    )
                continue
            _put(fields, field.gql, self.checked(part, text))
        return {comp.gql: fields}

    def checked(self, part: _Part, text: str) -> str:
        field, template = part.field, part.template
        assert template is not None
        limit = field.max_len
        # Half the limit in characters is within it in UTF-16 units: skip the count.
        if limit is not None and len(text) * 2 > limit and js_length(text) > limit:
            if part.policy == "truncate":
                self.truncated.append(template.key)
                return _cut(text, limit - js_length(ELLIPSIS)) + ELLIPSIS
            raise _RowInvalid(
                _problem(
                    "too_long",
                    f"{template.key} is {js_length(text)} characters; Plain allows at most "
                    f'{limit} (or set too_long = "truncate")',
                    template,
                )
            )
        if field.kind == "url":
            text = text.strip()
            if not _is_http_url(text):
                raise _RowInvalid(
                    _problem(
                        "bad_url", f"{template.key} is not an http(s) URL: {text[:80]!r}", template
                    )
                )
        if field.kind == "timestamp":
            try:
                when = parse_timestamp(text, self.mapper.tz)
            except KeyValueError as exc:
                raise _RowInvalid(
                    _problem("bad_timestamp", f"{template.key}: {exc}", template)
                ) from None
            text = format_utc(when, digits=3)
        return text


def js_length(text: str) -> int:
    """The length Plain's JavaScript sees: UTF-16 code units (an emoji counts 2).

    >>> js_length("ok 🚀")
    5
    """
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _cut(text: str, units: int) -> str:
    """The longest start of `text` within `units` UTF-16 code units, never half a character."""
    return text.encode("utf-16-le")[: units * 2].decode("utf-16-le", errors="ignore")


def _put(fields: dict[str, Any], path: str, value: str) -> None:
    """Set a possibly nested field (``userIdentifier.emailAddress``)."""
    if "." not in path:
        fields[path] = value
        return
    *parents, leaf = path.split(".")
    target = fields
    for name in parents:
        target = target.setdefault(name, {})
    target[leaf] = value


def _is_http_url(text: str) -> bool:
    simple = _SIMPLE_URL.match(text)
    if simple is not None:
        # The common shape, checked without urlsplit's cost.
        port = simple.group(1)
        return (port is None or 0 < int(port) <= 65535) and text.isprintable()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and text.isprintable()
        and " " not in text
    )


def _render(template: Template, ctx: Mapping[str, Any]) -> str:
    try:
        return template.render(ctx)
    except Exception as exc:  # a template error is the row's problem, never a crash
        raise _RowInvalid(
            RowProblem("template", f"{template.key}: {exc}", _only(template.columns))
        ) from None


def _problem(code: str, message: str, template: Template) -> RowProblem:
    return RowProblem(code, message, _only(template.columns))


def _only(columns: frozenset[str]) -> str:
    return next(iter(columns)) if len(columns) == 1 else ""
