"""A mutation's NOT_FOUND names the argument that found nothing: `field` is the path of the `id` the mutation acts
on (["id"]) or of the input's reference (["input", "tokenId"]), the same in every mutation, so a client can show
the error next to the right input. Enumerated from the served schema: a new mutation is covered the day it lands."""

from __future__ import annotations

import uuid

from graphql import GraphQLNonNull

from core.settings import Environment, Settings
from models.identity import Role
from schema import build_schema

EVERY_ROLE = [r.value for r in Role]


def _id_only_mutations() -> list[str]:
    """Mutations that take `id: UUID!` and nothing required besides (an optional input or none)."""
    schema = build_schema(Settings(RWA_ENV=Environment.DEVELOPMENT))._schema  # type: ignore[call-arg]  # by alias
    names = []
    for name, field in schema.mutation_type.fields.items():  # type: ignore[union-attr]
        if "id" not in field.args:
            continue
        others = [a for n, a in field.args.items() if n != "id"]
        if all(not isinstance(a.type, GraphQLNonNull) for a in others):
            names.append(name)
    return sorted(names)


ID_ONLY = _id_only_mutations()


def test_the_enumeration_finds_the_id_mutations() -> None:
    assert {"revokeApiKey", "cancelOrder", "retryOperation", "cancelOffering", "submitAsset"} <= set(ID_ONLY)


async def test_an_unknown_id_is_not_found_on_the_id_argument(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    staff = await make_user(roles=EVERY_ROLE)
    wrong = {}
    for name in ID_ONLY:
        doc = f"mutation($id: UUID!) {{ {name}(id: $id) {{ errors {{ code field }} }} }}"
        result = await gql(doc, {"id": str(uuid.uuid4())}, token=staff.token)
        errors = (result.get("data") or {}).get(name, {}) or {}
        got = [(e["code"], e["field"]) for e in errors.get("errors", [])] or result.get("errors")
        if got != [("NOT_FOUND", ["id"])]:
            wrong[name] = got
    assert not wrong, wrong


REFERENCES = [  # mutations acting on what their input references: the error names that input field
    ("pauseToken", "PauseTokenInput", {"reason": "audit"}, "tokenId"),
    ("cancelAllOrders", "CancelAllOrdersInput", {}, "marketId"),
    (
        "addValuation",
        "AddValuationInput",
        {"amount": "1", "currency": "USD", "method": "APPRAISAL", "asOf": "2026-01-01", "source": "appraiser"},
        "assetId",
    ),
    ("redeemTokens", "RedeemTokensInput", {"userId": "SELF", "amount": "1"}, "tokenId"),
    ("subscribeToOffering", "SubscribeInput", {"amount": "10"}, "offeringId"),
]


async def test_an_unknown_reference_in_the_input_is_not_found_on_that_input_field(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    staff = await make_user(roles=EVERY_ROLE)
    wrong = {}
    for name, input_type, given, reference in REFERENCES:
        values = {k: (str(staff.id) if v == "SELF" else v) for k, v in given.items()}
        values[reference] = str(uuid.uuid4())
        doc = f"mutation($i: {input_type}!) {{ {name}(input: $i) {{ errors {{ code field }} }} }}"
        result = await gql(doc, {"i": values}, token=staff.token)
        errors = (result.get("data") or {}).get(name, {}) or {}
        got = [(e["code"], e["field"]) for e in errors.get("errors", [])] or result.get("errors")
        if got != [("NOT_FOUND", ["input", reference])]:
            wrong[name] = got
    assert not wrong, wrong
