"""The full public schema of Plain, for contract tests, and checks on what we send."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLInputObjectType, GraphQLList, GraphQLNonNull, GraphQLSchema, build_schema

from tests.conftest import ROOT

FULL_SCHEMA = ROOT.parent / "shared" / "plain" / "schema.graphql"


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    if not FULL_SCHEMA.exists():
        message = f"Plain's full schema is not available at {FULL_SCHEMA}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must have ../shared)")
        pytest.skip(message)
    return build_schema(Path(FULL_SCHEMA).read_text(encoding="utf-8"))


def deprecated_or_ambiguous(value: Any, type_: Any, path: str) -> list[str]:
    """Deprecated input fields used, and one-of inputs with other than exactly one field."""
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    problems = []
    if isinstance(type_, GraphQLList):
        for i, item in enumerate(value):
            problems += deprecated_or_ambiguous(item, type_.of_type, f"{path}[{i}]")
    elif isinstance(type_, GraphQLInputObjectType):
        for name, item in value.items():
            field = type_.fields[name]
            if field.deprecation_reason:
                problems.append(f"{path}.{name} is deprecated")
            problems += deprecated_or_ambiguous(item, field.type, f"{path}.{name}")
        if type_.name in ("EventComponentInput", "CustomerIdentifierInput") and len(value) != 1:
            problems.append(f"{path} sets {len(value)} fields of {type_.name}")
    return problems
