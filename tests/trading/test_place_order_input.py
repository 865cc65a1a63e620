"""PlaceOrderInput is built by the `from_input` hook schema/input_conversion.py plans for it when the schema is
built: the same instance as strawberry's generic per-field conversion, for every shape of input graphql-core hands
over (all fields, only the required ones, explicit nulls)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from strawberry.types.arguments import convert_argument

from core.settings import Environment, Settings
from models.trading import OrderType, Side, TimeInForce
from schema import build_schema
from schema.trading import PlaceOrderInput

MARKET = uuid.uuid4()
VALUES: list[dict[str, Any]] = [
    {
        "marketId": MARKET,
        "side": Side.BUY,
        "type": OrderType.LIMIT,
        "quantity": Decimal("3"),
        "price": Decimal("10.50"),
        "timeInForce": TimeInForce.GTD,
        "expiresAt": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        "clientOrderId": "c-1",
    },
    {"marketId": MARKET, "side": Side.SELL, "type": OrderType.MARKET, "quantity": Decimal("1")},
    {
        "marketId": MARKET,
        "side": Side.SELL,
        "type": OrderType.LIMIT,
        "quantity": Decimal("2"),
        "price": None,
        "timeInForce": None,
        "expiresAt": None,
        "clientOrderId": None,
    },
]


@pytest.mark.parametrize("value", VALUES)
def test_the_hook_builds_what_strawberrys_conversion_builds(
    value: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = build_schema(Settings(RWA_ENV=Environment.TEST))
    registry, config = schema.schema_converter.scalar_registry, schema.config
    definition = PlaceOrderInput.__strawberry_definition__  # type: ignore[attr-defined]  # set by @strawberry.input
    assert definition.from_input is not None
    hooked = convert_argument(dict(value), PlaceOrderInput, registry, config)
    monkeypatch.setattr(definition, "from_input", None)  # strawberry's own walk
    generic = convert_argument(dict(value), PlaceOrderInput, registry, config)
    assert isinstance(hooked, PlaceOrderInput) and hooked == generic
    assert [getattr(hooked, k) for k in ("market_id", "side", "quantity")] == [MARKET, value["side"], value["quantity"]]
