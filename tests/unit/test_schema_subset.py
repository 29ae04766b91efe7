"""The schema subset is valid SDL, agrees with Plain's full schema and is up to date."""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib.resources import files
from pathlib import Path
from types import ModuleType

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
)

from backfill import plain_enums

REPO_ROOT = Path(__file__).resolve().parents[2]
FULL_SCHEMA_PATH = REPO_ROOT.parent / "shared" / "plain" / "schema.graphql"
SCRIPT_PATH = REPO_ROOT / "scripts" / "extract_schema.py"
MISSING_SCHEMA = "Plain's full schema (../shared/plain/schema.graphql) is not available"


def subset_text() -> str:
    return (files("backfill") / "schema" / "plain_subset.graphql").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def subset() -> GraphQLSchema:
    return build_schema(subset_text())


@pytest.fixture(scope="module")
def full_schema() -> GraphQLSchema:
    if not FULL_SCHEMA_PATH.is_file():
        # CI must check the subset against the real schema, never silently skip it.
        assert os.environ.get("CI") != "true", MISSING_SCHEMA
        pytest.skip(MISSING_SCHEMA)
    return build_schema(FULL_SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def extract_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("extract_schema", SCRIPT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def own_types(schema: GraphQLSchema) -> dict[str, GraphQLNamedType]:
    return {
        name: graphql_type
        for name, graphql_type in schema.type_map.items()
        if not name.startswith("__")
    }


def test_subset_parses(subset: GraphQLSchema) -> None:
    assert subset.query_type is not None
    assert set(subset.query_type.fields) == {"myWorkspace", "myPermissions"}
    assert subset.mutation_type is not None
    assert set(subset.mutation_type.fields) == {
        "createCustomerEvent",
        "createThreadEvent",
        "upsertCustomer",
    }


def test_subset_types_exist_in_full_schema_with_same_kind(
    subset: GraphQLSchema, full_schema: GraphQLSchema
) -> None:
    for name, graphql_type in own_types(subset).items():
        full_type = full_schema.get_type(name)
        assert full_type is not None, name
        assert type(full_type) is type(graphql_type), name


def test_subset_fields_and_arguments_match_full_schema(
    subset: GraphQLSchema, full_schema: GraphQLSchema
) -> None:
    for name, graphql_type in own_types(subset).items():
        full_type = full_schema.get_type(name)
        if isinstance(graphql_type, GraphQLObjectType):
            assert isinstance(full_type, GraphQLObjectType)
            for field_name, field in graphql_type.fields.items():
                full_field = full_type.fields.get(field_name)
                assert full_field is not None, f"{name}.{field_name}"
                assert str(field.type) == str(full_field.type), f"{name}.{field_name}"
                assert field.deprecation_reason == full_field.deprecation_reason
                for arg_name, arg in field.args.items():
                    full_arg = full_field.args.get(arg_name)
                    assert full_arg is not None, f"{name}.{field_name}({arg_name})"
                    assert str(arg.type) == str(full_arg.type), f"{name}.{field_name}({arg_name})"
                assert set(field.args) == set(full_field.args), f"{name}.{field_name}"


def test_subset_input_types_are_complete(subset: GraphQLSchema, full_schema: GraphQLSchema) -> None:
    inputs = [t for t in own_types(subset).values() if isinstance(t, GraphQLInputObjectType)]
    assert inputs
    for graphql_type in inputs:
        full_type = full_schema.get_type(graphql_type.name)
        assert isinstance(full_type, GraphQLInputObjectType)
        assert set(graphql_type.fields) == set(full_type.fields), graphql_type.name
        for field_name, field in graphql_type.fields.items():
            full_field = full_type.fields[field_name]
            where = f"{graphql_type.name}.{field_name}"
            assert str(field.type) == str(full_field.type), where
            assert field.description == full_field.description, where
            assert field.deprecation_reason == full_field.deprecation_reason, where


def test_subset_enums_are_complete(subset: GraphQLSchema, full_schema: GraphQLSchema) -> None:
    enums = [t for t in own_types(subset).values() if isinstance(t, GraphQLEnumType)]
    assert enums
    for graphql_type in enums:
        full_type = full_schema.get_type(graphql_type.name)
        assert isinstance(full_type, GraphQLEnumType)
        assert set(graphql_type.values) == set(full_type.values), graphql_type.name


def test_plain_enums_match_subset(subset: GraphQLSchema) -> None:
    expected = {
        graphql_type.name: frozenset(graphql_type.values)
        for graphql_type in own_types(subset).values()
        if isinstance(graphql_type, GraphQLEnumType)
    }
    assert plain_enums.ENUMS == expected
    assert plain_enums.COMPONENT_TEXT_SIZE == frozenset({"S", "M", "L"})


def test_generated_files_are_up_to_date(
    full_schema: GraphQLSchema, extract_script: ModuleType
) -> None:
    regenerated = extract_script.extract_subset(full_schema)
    assert regenerated == subset_text(), "run: python scripts/extract_schema.py"
    enums_module = (REPO_ROOT / "backfill" / "plain_enums.py").read_text(encoding="utf-8")
    assert extract_script.render_enums_module(regenerated) == enums_module, (
        "run: python scripts/extract_schema.py"
    )
