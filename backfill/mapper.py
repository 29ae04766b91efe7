"""SourceRow -> externalId, and SourceRow -> Event | Invalid (pure).

`event_id` reads only the key columns (or renders only the id template), so the
planner can decide what needs sending before any other template is rendered.
`map_row` renders the rest and applies Plain's documented limits offline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from backfill.ids import KeyValueError, external_id, format_utc, normalise_key, parse_timestamp
from backfill.mapping import (
    COMPONENTS,
    Condition,
    FieldSpec,
    MappingSpec,
    Template,
    compile_condition,
    compile_template,
    environment,
)
from backfill.models import Event, Invalid, RowProblem, SourceRow

MAX_EXTERNAL_ID = 255


@dataclass(frozen=True, slots=True)
class _Part:
    field: FieldSpec
    value: str
    template: Template | None


@dataclass(frozen=True, slots=True)
class _Component:
    gql: str
    key: str
    parts: tuple[_Part, ...]
    when: Condition | None


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
    components = []
    for rule in spec.components:
        fields = {f.name: f for f in COMPONENTS[rule.type].fields}
        parts = tuple(
            _Part(
                fields[name],
                value,
                None
                if fields[name].kind == "enum"
                else compile_template(env, value, file=file, key=f"{rule.key}.{name}"),
            )
            for name, value in rule.values
        )
        when = (
            compile_condition(env, rule.when, file=file, key=f"{rule.key}.when")
            if rule.when
            else None
        )
        components.append(_Component(COMPONENTS[rule.type].gql, rule.key, parts, when))
    id_template = (
        compile_template(env, spec.id_template, file=file, key="external_id.template")
        if spec.id_template
        else None
    )
    return Mapper(
        spec=spec,
        title=compile_template(env, spec.title, file=file, key="title"),
        id_template=id_template,
        components=tuple(components),
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
            value = _render(mapper.id_template, _context(row.values)).strip()
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


def map_row(mapper: Mapper, row: SourceRow, external_id: str) -> Event | Invalid:
    """Render one row into the `input` of its Plain mutation, or say why it cannot be.

    >>> map_row(mapper, row, "acme_...").input["title"]  # doctest: +SKIP
    'Plan upgraded'
    """
    if row.problem is not None:
        return Invalid(row.source, row.position, row.problem, external_id)
    try:
        ctx = _context(row.values)
        return _build(mapper, row, ctx, external_id)
    except _RowInvalid as exc:
        return Invalid(row.source, row.position, exc.problem, external_id)
    except Exception as exc:  # bad input never crashes the job: the row gets the reason
        problem = RowProblem("unreadable_value", f"{type(exc).__name__}: {exc}"[:300])
        return Invalid(row.source, row.position, problem, external_id)


def payload_hash(payload: Mapping[str, Any]) -> str:
    """A stable hash of what is sent, to report rows whose mapping would now differ."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _build(mapper: Mapper, row: SourceRow, ctx: dict[str, Any], ext_id: str) -> Event:
    spec = mapper.spec
    title = _render(mapper.title, ctx)
    if not title.strip():
        raise _RowInvalid(_problem("empty", "the title rendered empty", mapper.title))
    customer = row.values[spec.customer_column].strip()
    if not customer:
        raise _RowInvalid(
            RowProblem("missing_customer", "the customer column is empty", spec.customer_column)
        )
    if spec.customer_field == "emailAddress" and "@" not in customer:
        raise _RowInvalid(
            RowProblem(
                "bad_customer", f"not an email address: {customer[:80]!r}", spec.customer_column
            )
        )
    try:
        when = parse_timestamp(row.values[spec.timestamp_column], mapper.tz)
    except KeyValueError as exc:
        raise _RowInvalid(RowProblem("bad_timestamp", str(exc), spec.timestamp_column)) from None
    timestamp = format_utc(when, digits=3)
    payload: dict[str, Any] = {
        "customerIdentifier": {spec.customer_field: customer},
        "externalId": ext_id,
        "title": title,
        "components": [c for c in (_component(c, ctx, mapper.tz) for c in mapper.components) if c],
        "timestamp": timestamp,
    }
    return Event(
        external_id=ext_id,
        kind=spec.kind,
        input=payload,
        payload_hash=payload_hash(payload),
        source=row.source,
        position=row.position,
        timestamp=timestamp,
    )


def _component(comp: _Component, ctx: dict[str, Any], tz: ZoneInfo) -> dict[str, Any] | None:
    if comp.when is not None:
        try:
            keep = comp.when.test(ctx)
        except Exception as exc:  # a template error is the row's problem, never a crash
            raise _RowInvalid(
                RowProblem("template", f"{comp.when.key}: {exc}", _only(comp.when.columns))
            ) from None
        if not keep:
            return None
    fields: dict[str, Any] = {}
    for part in comp.parts:
        field = part.field
        if part.template is None:
            fields[field.gql] = part.value
            continue
        text = _render(part.template, ctx)
        if not text.strip():
            if field.required:
                raise _RowInvalid(
                    _problem("empty", f"{part.template.key} rendered empty", part.template)
                )
            continue
        fields[field.gql] = _checked(field, text, part.template, tz)
    return {comp.gql: fields}


def _checked(field: FieldSpec, text: str, template: Template, tz: ZoneInfo) -> str:
    if field.max_len is not None and len(text) > field.max_len:
        raise _RowInvalid(
            _problem(
                "too_long",
                f"{template.key} is {len(text)} characters; Plain allows at most {field.max_len}",
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
            when = parse_timestamp(text, tz)
        except KeyValueError as exc:
            raise _RowInvalid(
                _problem("bad_timestamp", f"{template.key}: {exc}", template)
            ) from None
        text = format_utc(when, digits=3)
    return text


def _is_http_url(text: str) -> bool:
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


def _context(values: Mapping[str, str]) -> dict[str, Any]:
    ctx: dict[str, Any] = {"row": values}
    ctx.update(values)
    return ctx
