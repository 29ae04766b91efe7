"""The mapping file: TOML in, a checked `MappingSpec` and compiled templates out.

A mapping says which Plain event each row becomes: a customer event or, for rows
with a thread id, a thread event; its title, historical timestamp, components and
the externalId rule. Templates are Jinja2 in
a sandboxed environment with strict undefined variables; every column a template
names is checked against each source's header before anything is sent, so a typo
fails at once, not at row 3,000,000. Enum values (sizes, colours) are checked
against Plain's schema here, at load time, not per row. Inside:

- `components`: the component types, their fields and Plain's field limits;
- `spec`: the records of a checked mapping, and the check of its columns against a
  source's header;
- `templates`: the Jinja sandbox: templates and `when` expressions compiled once,
  the names a row's templates see, memoised renders, the columns a template reads;
- `parse`: the TOML file read and checked into a `MappingSpec`.
"""

from __future__ import annotations

from backfill.mapping.components import COMPONENTS, ROW, FieldSpec, Policy
from backfill.mapping.parse import load_mapping, parse_mapping
from backfill.mapping.spec import ComponentRule, MappingSpec, check_columns
from backfill.mapping.templates import (
    Condition,
    Template,
    compile_condition,
    compile_template,
    context,
    environment,
)

__all__ = [
    "COMPONENTS",
    "ROW",
    "ComponentRule",
    "Condition",
    "FieldSpec",
    "MappingSpec",
    "Policy",
    "Template",
    "check_columns",
    "compile_condition",
    "compile_template",
    "context",
    "environment",
    "load_mapping",
    "parse_mapping",
]
