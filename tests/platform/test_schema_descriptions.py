"""Every argument, object/interface field and input field the API serves has a description (issue 14: a client
reading the schema or GraphiQL learns what each value means and its format), and schema/descriptions.py holds
no entry for something that is gone or already described where it is defined."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from graphql import GraphQLInputObjectType, GraphQLInterfaceType, GraphQLObjectType, GraphQLSchema

from core.settings import Environment, Settings
from schema import build_schema
from schema import descriptions as d
from schema.mutations import GENERATED_INPUTS

ENVIRONMENTS = (Environment.PRODUCTION, Environment.DEVELOPMENT)


def served(env: Environment) -> GraphQLSchema:
    return build_schema(Settings(RWA_ENV=env))._schema  # type: ignore[call-arg]  # pydantic settings by alias


def targets(schema: GraphQLSchema) -> Iterator[tuple[str, str, str, str | None]]:
    """(table, path, name, description) of every argument ("arg"), object/interface field ("field") and input
    field ("input") of the schema, introspection types excepted."""
    for type_name, t in schema.type_map.items():
        if type_name.startswith("__"):
            continue
        if isinstance(t, (GraphQLObjectType, GraphQLInterfaceType)):
            for field_name, field in t.fields.items():
                yield "field", f"{type_name}.{field_name}", field_name, field.description
                for arg_name, arg in field.args.items():
                    yield "arg", f"{type_name}.{field_name}.{arg_name}", arg_name, arg.description
        elif isinstance(t, GraphQLInputObjectType):
            mutation = GENERATED_INPUTS.get(type_name)  # a mutation's arguments as one input: described as such
            for field_name, field in t.fields.items():
                if mutation is not None:
                    yield "arg", f"{mutation}.{field_name}", field_name, field.description
                else:
                    yield "input", f"{type_name}.{field_name}", field_name, field.description


@pytest.fixture(scope="module")
def schemas() -> dict[Environment, GraphQLSchema]:
    return {env: served(env) for env in ENVIRONMENTS}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_argument_and_field_is_described(schemas: dict[Environment, GraphQLSchema], env: Environment) -> None:
    missing = [f"{table} {path}" for table, path, _, text in targets(schemas[env]) if not (text or "").strip()]
    assert not missing, (
        f"{len(missing)} undescribed in the {env.value} schema: describe them where they are "
        "defined or in schema/descriptions.py:\n" + "\n".join(missing)
    )


def test_no_stale_description_entries(schemas: dict[Environment, GraphQLSchema]) -> None:
    """An entry is live when something it targets carries its text: a path that no longer exists, a shared name
    no argument/field has, or an entry a definition-site description overrides is dead text and fails here."""
    tables = {
        "arg": (d.ARG_OVERRIDES, d.ARGS),
        "field": (d.FIELD_OVERRIDES, d.FIELDS),
        "input": (d.INPUT_OVERRIDES, d.INPUT_FIELDS),
    }
    live: set[tuple[str, str]] = set()
    for schema in schemas.values():
        for table, path, name, text in targets(schema):
            exact, shared = tables[table]
            if exact.get(path) == text:
                live.add((table + " path", path))
            elif path not in exact and shared.get(name) == text:
                live.add((table + " name", name))
    stale = [
        f"{table} {key}"
        for table, (exact, shared) in tables.items()
        for kind, entries in (("path", exact), ("name", shared))
        for key in entries
        if (f"{table} {kind}", key) not in live
    ]
    assert not stale, "schema/descriptions.py entries that describe nothing served (remove them):\n" + "\n".join(stale)


def test_entries_are_sentences() -> None:
    """Each entry is a real description: non-empty, starts with a capital, backtick or digit, ends with a full stop
    (the SDL and GraphiQL show them as they are)."""
    bad = [
        key
        for table in (d.ARGS, d.ARG_OVERRIDES, d.FIELDS, d.FIELD_OVERRIDES, d.INPUT_FIELDS, d.INPUT_OVERRIDES)
        for key, text in table.items()
        if not text.strip() or not text.endswith((".", ")")) or not (text[0].isupper() or text[0] in "`0123456789")
    ]
    assert not bad, f"entries that are not sentences: {bad}"


def test_definition_site_descriptions_win(schemas: dict[Environment, GraphQLSchema]) -> None:
    """describe() only fills blanks: a description written on the field stays (Query.asset's own text, not the
    shared `id` entry's)."""
    schema = schemas[Environment.PRODUCTION]
    assert schema.query_type is not None
    asset = schema.query_type.fields["asset"]
    assert asset.description and asset.description.startswith("An asset; null when missing")
    described = schema.get_type("Asset")
    assert isinstance(described, GraphQLObjectType)
    assert described.fields["latestValuation"].description == "The valuation with the newest as-of date."
