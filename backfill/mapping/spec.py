"""The mapping's records: a checked mapping file as frozen values, and the columns it reads.

`MappingSpec` is what a mapping file says, not yet bound to any source.
`check_columns` holds it against a source's header, so a column a template or key
names and the source lacks fails before anything is sent, not at row 3,000,000.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from backfill.errors import MappingError
from backfill.ids import ID_FORMAT_VERSION
from backfill.mapping.components import COMPONENTS, Policy
from backfill.mapping.templates import compile_condition, compile_template, environment
from backfill.models import EventKind
from backfill.urls import display_name


@dataclass(frozen=True, slots=True)
class KeyColumn:
    """A column of the externalId key and the type it is normalised by."""

    column: str
    type: str


@dataclass(frozen=True, slots=True)
class ComponentRule:
    """One `[[components]]` entry: its type, field values, `when`, and too-long policies.

    A `row` has no values of its own: its `main` and `aside` hold component rules.
    """

    type: str
    key: str
    values: tuple[tuple[str, str], ...]
    when: str = ""
    policies: tuple[tuple[str, Policy], ...] = ()
    main: tuple[ComponentRule, ...] = ()
    aside: tuple[ComponentRule, ...] = ()

    def policy(self, field: str) -> Policy:
        return dict(self.policies).get(field, "reject")


@dataclass(frozen=True, slots=True)
class CustomerSpec:
    """The `[customer]` section: the identifying column and the columns an upsert needs."""

    identify_field: str
    identify_column: str
    email_column: str = ""
    external_id_column: str = ""
    full_name_column: str = ""


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """`[source]`: how the job's CSV files are written (warehouse exports vary)."""

    delimiter: str = ","
    quote: str = '"'
    #: Column names for files without a header row (Snowflake COPY INTO, Redshift UNLOAD).
    columns: tuple[str, ...] = ()
    #: Values that mean NULL (e.g. Redshift's and MySQL's \N); they read as empty.
    null: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MappingSpec:
    """A checked mapping file, not yet bound to any source."""

    file: str
    title: str
    customer: CustomerSpec | None
    thread_column: str
    timestamp_column: str
    timezone: str
    namespace: str
    keys: tuple[KeyColumn, ...]
    id_template: str
    components: tuple[ComponentRule, ...]
    hash: str
    #: "" for ISO 8601 text, or the Unix-time unit of the timestamp column ("s", "ms", "us").
    timestamp_unit: str = ""
    #: How CSV sources are split ([source]): delimiter, quote, column names, NULL markers.
    source: SourceSpec = SourceSpec()

    @property
    def kinds(self) -> frozenset[EventKind]:
        """The event kinds this mapping can produce."""
        kinds = set()
        if self.customer is not None:
            kinds.add(EventKind.CUSTOMER)
        if self.thread_column:
            kinds.add(EventKind.THREAD)
        return frozenset(kinds)

    @property
    def id_rule(self) -> str:
        """A canonical description of the externalId rule, kept in the ledger."""
        rule: dict[str, Any] = {"version": ID_FORMAT_VERSION, "namespace": self.namespace}
        if self.id_template:
            rule["template"] = self.id_template
        else:
            rule["keys"] = [[k.column, k.type] for k in self.keys]
            rule["timezone"] = (
                self.timezone if any(k.type == "timestamp" for k in self.keys) else ""
            )
        return json.dumps(rule, sort_keys=True, separators=(",", ":"))

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def check_columns(spec: MappingSpec, columns: Sequence[str], *, source: str) -> None:
    """Fail before anything is sent when the mapping names a column `source` lacks."""
    present = set(columns)
    for key, column in referenced_columns(spec):
        if column not in present:
            raise MappingError(
                f"unknown column {column!r}{suggest(column, columns)} in "
                f"{display_name(source)} "
                f"(its columns: {', '.join(columns)}){_delimiter_hint(columns)}",
                file=spec.file,
                key=key,
                column=column,
            )


def _delimiter_hint(columns: Sequence[str]) -> str:
    if len(columns) == 1:
        for delimiter, name in (("\t", "tab"), (";", "semicolon"), ("|", "pipe")):
            if delimiter in columns[0]:
                return f"; the header looks {name}-separated, and this version reads commas"
    return ""


def walk(rules: Sequence[ComponentRule]) -> Iterator[ComponentRule]:
    """Every component rule, those inside rows included."""
    for rule in rules:
        yield rule
        yield from walk(rule.main)
        yield from walk(rule.aside)


def referenced_columns(spec: MappingSpec) -> list[tuple[str, str]]:
    """Every (mapping key, column) pair the mapping reads."""
    env = environment()
    refs: list[tuple[str, str]] = [("timestamp.column", spec.timestamp_column)]
    customer = spec.customer
    if customer is not None:
        refs.append(("customer", customer.identify_column))
        refs += [
            (f"customer.{key}", column)
            for key, column in (
                ("email", customer.email_column),
                ("external_id", customer.external_id_column),
                ("full_name", customer.full_name_column),
            )
            if column
        ]
    if spec.thread_column:
        refs.append(("thread.id", spec.thread_column))
    refs += [(f"external_id.key[{i}]", k.column) for i, k in enumerate(spec.keys)]
    templates = [("title", spec.title)]
    if spec.id_template:
        templates.append(("external_id.template", spec.id_template))
    for rule in walk(spec.components):
        kinds = {f.name: f.kind for f in COMPONENTS[rule.type].fields}
        templates += [(f"{rule.key}.{n}", v) for n, v in rule.values if kinds[n] != "enum"]
        if rule.when:
            cond = compile_condition(env, rule.when, file=spec.file, key=f"{rule.key}.when")
            refs += [(cond.key, c) for c in sorted(cond.columns)]
    for key, source in templates:
        template = compile_template(env, source, file=spec.file, key=key)
        refs += [(key, c) for c in sorted(template.columns)]
    return refs


def suggest(word: str, choices: Iterable[str]) -> str:
    """A hint naming the choice closest to a misspelt `word`, or "" when none is close.

    >>> suggest("titel", ["title", "customer"])
    " (did you mean 'title'?)"
    """
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
