"""The scope catalogue names real root fields, and the operation's root fields are found however they are spelled."""

from __future__ import annotations

from graphql import parse

from core.oauth_scopes import SCOPES
from schema.scopes import FIELD_SCOPES, root_fields, scope_refusal
from tests.test_authorization_matrix import SCHEMA_FIELDS


def test_every_scoped_field_exists_in_the_schema() -> None:
    stale = sorted(set(FIELD_SCOPES) - set(SCHEMA_FIELDS))
    assert not stale, f"core/oauth_scopes.py names fields the schema does not have: {stale}"
    assert all(scope.count(":") == 1 and fields for scope, fields in SCOPES.items())


def test_root_fields_through_fragments_aliases_and_named_operations() -> None:
    doc = parse("""
        query A { x: markets { id } ...F ... on Query { assets(first: 1) { edges { cursor } } } __typename }
        fragment F on Query { me { id } ...G }
        fragment G on Query { markets { id } ...F }
        mutation B { placeOrder(input: {}) { order { id } } }""")
    assert root_fields(doc, "A") == ("Query", ["markets", "me", "markets", "assets", "__typename"])
    assert root_fields(doc, "B") == ("Mutation", ["placeOrder"])
    assert root_fields(doc, None) is None and root_fields(doc, "C") is None  # graphql-core reports these itself
    refused = scope_refusal(doc, "A", frozenset({"market-data:read", "assets:read"}))
    assert refused is not None and refused.extensions == {
        "reason": "INSUFFICIENT_SCOPE",
        "field": "me",
        "requiredScopes": ["account:read"],
    }
    assert scope_refusal(doc, "A", frozenset({"market-data:read", "assets:read", "account:read"})) is None
    assert scope_refusal(doc, "B", frozenset({"orders:read"})) is not None
    assert scope_refusal(doc, "B", frozenset({"orders:write"})) is None
