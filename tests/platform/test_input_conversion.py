"""Input objects built from a plan made at schema build (schema/input_conversion.py) receive exactly what
Strawberry's own conversion gives them: scalars and enums as parsed, nested inputs and lists converted, omitted
fields at their default, explicit nulls as None; `Maybe` inputs keep Strawberry's null check."""

from __future__ import annotations

import enum
from decimal import Decimal

import strawberry

from schema import input_conversion


@strawberry.enum
class Side(enum.Enum):
    BUY = "BUY"
    SELL = "SELL"


@strawberry.input
class Leg:
    quantity: Decimal
    note: str | None = None


@strawberry.input
class Order:
    side: Side
    price: Decimal
    legs: list[Leg]
    tags: list[str]
    limit: Decimal | None
    maybe_side: Side | None = None
    count: int = 3
    child: Leg | None = strawberry.UNSET


@strawberry.input
class Patch:
    name: strawberry.Maybe[str]


def make_schema(seen: list[object]) -> strawberry.Schema:
    @strawberry.type
    class Query:
        @strawberry.field
        def order(self, input: Order) -> bool:
            seen.append(input)
            return True

        @strawberry.field
        def patch(self, input: Patch) -> bool:
            seen.append(input)
            return True

    return strawberry.Schema(query=Query)


QUERY = "query($i: Order!) { order(input: $i) }"
VALUES = [
    {
        "side": "SELL",
        "price": "10.50",
        "legs": [{"quantity": "1"}, {"quantity": "2", "note": "x"}],
        "tags": ["a"],
        "limit": None,
        "child": {"quantity": "4", "note": None},
    },
    {"side": "BUY", "price": "1", "legs": [], "tags": [], "limit": "7", "maybeSide": "SELL", "count": 9},
]


def run(schema: strawberry.Schema, query: str, variables: dict) -> object:  # type: ignore[type-arg]
    result = schema.execute_sync(query, variable_values=variables)
    return result.errors and [e.message for e in result.errors]


def strawberry_builds(*types: type) -> None:
    """Back to Strawberry's own conversion (input classes are shared by every schema built in this module)."""
    for type_ in types:
        type_.__strawberry_definition__.from_input = None  # type: ignore[attr-defined]


def test_planned_inputs_get_what_strawberry_would_build() -> None:
    try:
        for value in VALUES:
            strawberry_builds(Order, Leg)
            plain, planned = [], []  # type: ignore[var-annotated]
            assert run(make_schema(plain), QUERY, {"i": value}) is None
            fast = make_schema(planned)
            assert input_conversion.install(fast) >= 2
            assert Order.__strawberry_definition__.from_input is not None
            assert run(fast, QUERY, {"i": value}) is None
            assert planned == plain and type(planned[0]) is Order
            assert repr(planned[0]) == repr(plain[0])  # UNSET stays UNSET, legs are Leg instances
    finally:
        strawberry_builds(Order, Leg)


def test_maybe_inputs_are_left_to_strawberry() -> None:
    seen: list[object] = []
    schema = make_schema(seen)
    input_conversion.install(schema)
    assert Patch.__strawberry_definition__.from_input is None
    errors = run(schema, "query($i: Patch!) { patch(input: $i) }", {"i": {"name": None}})
    assert errors and not seen  # an explicit null for Maybe[str] is still refused


def test_the_api_schema_plans_place_order_input(settings) -> None:  # type: ignore[no-untyped-def]
    from schema import build_schema

    schema = build_schema(settings)
    place_order_input = schema.schema_converter.type_map["PlaceOrderInput"].definition
    assert place_order_input.from_input is not None
