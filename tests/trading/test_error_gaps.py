"""Typed errors where INTERNAL or a wrong refusal used to come back: candles at the edges of time, an idempotent retry
of a GTD order after its expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from models.trading import OrderType, Side, TimeInForce
from resolvers.trading import orders
from tests.trading.factories import make_market, make_trader

CANDLES = "query($m: UUID!, $f: DateTime, $t: DateTime) { candles(marketId: $m, interval: ONE_DAY, from: $f, to: $t) { open } }"
PLACE = (
    "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) "
    "{ order { id status clientOrderId } errors { code field message } } }"
)


@pytest.mark.parametrize(
    "from_,to,code",
    [
        (None, "0001-01-01T00:00:00Z", "BAD_USER_INPUT"),  # `to - 1 day` overflowed: INTERNAL
        (None, "0001-01-01T12:00:00Z", None),  # the window is clipped to the first representable instant
        (None, "0001-01-01T00:00:00-05:00", None),
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", None),
        ("9999-12-31T23:59:59Z", None, "BAD_USER_INPUT"),  # from after now
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "BAD_USER_INPUT"),
        (None, "9999-12-31T23:59:59.999999Z", None),
        (None, "0001-01-01T00:00:00+14:00", "BAD_USER_INPUT"),  # before the first instant in UTC
    ],
)
async def test_candles_at_the_edges_of_time(gql, make_user, session_factory, from_, to, code) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    m = await make_market(session_factory)
    result = await gql(CANDLES, {"m": str(m.market_id), "f": from_, "t": to}, token=user.token)
    if code is None:
        assert "errors" not in result and result["data"]["candles"] == [], result
    else:
        assert gql.error_code(result) == code, result


async def _place_in_the_past(session, m, user_id, client_order_id: str, expires_at: datetime):  # type: ignore[no-untyped-def]
    """A GTD order placed an hour ago, expiring half an hour ago (the resolver takes `now`)."""
    req = orders.OrderRequest(
        m.market_id,
        Side.BUY,
        OrderType.LIMIT,
        Decimal("5"),
        Decimal("1.00"),
        TimeInForce.GTD,
        expires_at,
        client_order_id,
    )
    placed = await orders.place_order(session, user_id, req, now=expires_at - timedelta(minutes=30))
    return placed.order


async def test_retrying_an_expired_gtd_order_returns_the_stored_order(gql, make_user, session_factory, session) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    m = await make_market(session_factory)
    await make_trader(session_factory, m, user_id=user.id, cash="1000")
    expired = datetime.now(UTC) - timedelta(minutes=30)
    stored = await _place_in_the_past(session, m, user.id, "gtd-retry-1", expired)
    retry = {
        "i": {
            "marketId": str(m.market_id),
            "side": "BUY",
            "type": "LIMIT",
            "quantity": "5",
            "price": "1.00",
            "timeInForce": "GTD",
            "expiresAt": expired.isoformat(),
            "clientOrderId": "gtd-retry-1",
        }
    }
    result = await gql(PLACE, retry, token=user.token)
    assert gql.payload(result, "placeOrder", "order")["id"] == str(stored.id)
    # the clientOrderId (the user's, not the market's) sent for another market: another order, not a retry of it
    other = await make_market(session_factory)
    elsewhere = {"i": {**retry["i"], "marketId": str(other.market_id)}}
    result = await gql(PLACE, elsewhere, token=user.token)
    assert gql.error_code(result) == "IDEMPOTENCY_KEY_REUSED", result
    # a new clientOrderId with an expiry in the past is still refused
    fresh = {"i": {**retry["i"], "clientOrderId": "gtd-retry-2"}}
    result = await gql(PLACE, fresh, token=user.token)
    assert gql.error_code(result) == "BAD_USER_INPUT"
    assert result["data"]["placeOrder"]["errors"][0]["field"] == ["input", "expiresAt"]
