"""Trading over GraphQL (in-process app): markets, funding, orders and their typed errors, queries, expiry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from models.identity import AuditLog
from models.tokens import Token, TokenKind
from resolvers.trading.expiry import expire_due_orders
from tests.trading.factories import make_market, make_trader, random_address

ORDER = "id status reason price quantity filledQuantity reservedCash clientOrderId"
ERRORS = "errors { code field message }"
PLACE = f"mutation($i: PlaceOrderInput!) {{ placeOrder(input: $i) {{ order {{ {ORDER} }} {ERRORS} }} }}"


def order_input(m, side, qty, price=None, **extra):  # type: ignore[no-untyped-def]
    return {
        "i": {
            "marketId": str(m.market_id),
            "side": side,
            "type": extra.pop("type", "LIMIT"),
            "quantity": qty,
            "price": price,
            **extra,
        }
    }


def field_of(result) -> str | None:  # type: ignore[no-untyped-def]
    """The input field a mutation's first payload error names (its path is ["input", <field>])."""
    (payload,) = result["data"].values()
    return payload["errors"][0]["field"][-1]


async def test_open_market_and_status(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    admin = await make_user(roles=["ADMIN"])
    m = await make_market(session_factory)
    quote = f"EUR{uuid.uuid4().hex[:5].upper()}"
    async with session_factory() as s:
        s.add(
            Token(
                id=uuid.uuid4(),
                chain_id=m.chain_id,
                address=random_address(),
                kind=TokenKind.STABLECOIN,
                symbol=quote,
                decimals=6,
            )
        )
        await s.commit()
    call = (
        "mutation($t: UUID!, $q: String!, $tick: Decimal!, $lot: Decimal!) { openMarket(input: {tokenId: $t, "
        "quoteCurrency: $q, tickSize: $tick, lotSize: $lot, takerFeeBps: 25}) { market { id symbol status tickSize "
        "lotSize takerFeeBps quoteCurrency } errors { code field message } } }"
    )
    args = {"t": str(m.token_id), "q": quote, "tick": "0.0100", "lot": "1"}
    bad = await gql(call, {**args, "tick": "0"}, token=admin.token)
    assert gql.error_code(bad) == "BAD_USER_INPUT" and field_of(bad) == "tickSize"
    bad = await gql(call, {**args, "lot": "0.0000001"}, token=admin.token)  # token has 6 decimals
    assert gql.error_code(bad) == "BAD_USER_INPUT" and field_of(bad) == "lotSize"
    bad = await gql(call, {**args, "q": "NOPE"}, token=admin.token)
    assert gql.error_code(bad) == "BAD_USER_INPUT" and field_of(bad) == "quoteCurrency"
    ok = await gql(call, args, token=admin.token)
    market = gql.payload(ok, "openMarket", "market")
    assert market["status"] == "OPEN" and market["tickSize"] == "0.01" and market["takerFeeBps"] == 25
    again = await gql(call, args, token=admin.token)
    assert gql.error_code(again) == "DUPLICATE_MARKET" and again["data"]["openMarket"]["market"] is None
    other = await make_market(session_factory)  # another token asking for the same symbol
    named = (
        "mutation($t: UUID!, $q: String!, $s: String!) { openMarket(input: {tokenId: $t, quoteCurrency: $q, "
        'tickSize: "0.01", lotSize: "1", symbol: $s}) { market { id } errors { code message } } }'
    )
    taken = await gql(named, {"t": str(other.token_id), "q": quote, "s": market["symbol"]}, token=admin.token)
    (error,) = taken["data"]["openMarket"]["errors"]
    assert error["code"] == "DUPLICATE_SYMBOL" and market["symbol"] in error["message"]
    halted = await gql(
        "mutation($m: UUID!) { setMarketStatus(input: {marketId: $m, status: HALTED}) { market { status } errors { code } } }",
        {"m": market["id"]},
        token=admin.token,
    )
    assert gql.payload(halted, "setMarketStatus", "market")["status"] == "HALTED"
    listed = await gql("{ markets(status: HALTED) { id } }", token=admin.token)
    assert {"id": market["id"]} in listed["data"]["markets"]
    async with session_factory() as s:
        actions = (await s.execute(select(AuditLog.action).where(AuditLog.target_id == market["id"]))).scalars().all()
    assert sorted(actions) == ["market.open", "market.status"]


async def test_order_input_errors_name_the_field(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, tick="0.05", lot="10", min_notional="100")
    user = await make_user()
    cases = [
        (order_input(m, "BUY", "15", "1.00"), "quantity"),  # not a lot multiple
        (order_input(m, "BUY", "10", "1.01"), "price"),  # not a tick multiple
        (order_input(m, "BUY", "10", "1.00"), "quantity"),  # 10 < min notional 100
        (order_input(m, "BUY", "100"), "price"),  # LIMIT without price
        (order_input(m, "BUY", "100", type="MARKET"), "price"),  # MARKET buy needs a cap
        (order_input(m, "SELL", "100", type="MARKET", timeInForce="GTC"), "timeInForce"),
        (order_input(m, "BUY", "100", "1.00", timeInForce="GTD"), "expiresAt"),
        (order_input(m, "BUY", "100", "1.00", expiresAt="2030-01-01T00:00:00Z"), "expiresAt"),
        (order_input(m, "BUY", "-10", "1.00"), "quantity"),
        (order_input(m, "BUY", "100", "1.00", clientOrderId="x" * 65), "clientOrderId"),
    ]
    for variables, field in cases:
        result = await gql(PLACE, variables, token=user.token)
        assert gql.error_code(result) == "BAD_USER_INPUT" and field_of(result) == field, (variables, result)
    nope = await gql(
        PLACE, {"i": {**order_input(m, "BUY", "10", "1")["i"], "marketId": str(uuid.uuid4())}}, token=user.token
    )
    assert gql.error_code(nope) == "NOT_FOUND"


async def test_a_client_order_id_reused_for_another_order_is_refused(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    """A retry (the same clientOrderId and parameters) gets the stored order; the id reused for another order is
    IDEMPOTENCY_KEY_REUSED and places nothing (it used to answer the first order: a client asking for 5 at 2.00
    was told its order of 1 at 1.00 was the one it placed)."""
    user = await make_user()
    m = await make_market(session_factory)
    await make_trader(session_factory, m, user_id=user.id, cash="1000")
    first = await gql(PLACE, order_input(m, "BUY", "1", "1.00", clientOrderId="k-1"), token=user.token)
    placed = gql.payload(first, "placeOrder", "order")
    again = await gql(PLACE, order_input(m, "BUY", "1", "1", clientOrderId="k-1"), token=user.token)
    assert gql.payload(again, "placeOrder", "order") == placed
    for other in (
        order_input(m, "BUY", "5", "1.00", clientOrderId="k-1"),
        order_input(m, "BUY", "1", "2.00", clientOrderId="k-1"),
        order_input(m, "SELL", "1", "1.00", clientOrderId="k-1"),
        order_input(m, "BUY", "1", "1.00", clientOrderId="k-1", timeInForce="IOC"),
    ):
        refused = await gql(PLACE, other, token=user.token)
        assert gql.error_code(refused) == "IDEMPOTENCY_KEY_REUSED", (other, refused)
        assert field_of(refused) == "clientOrderId" and refused["data"]["placeOrder"]["order"] is None
    mine = await gql("{ myOrders { edges { node { id quantity price } } } }", token=user.token)
    assert [e["node"] for e in mine["data"]["myOrders"]["edges"]] == [
        {"id": placed["id"], "quantity": "1", "price": placed["price"]}
    ]


async def test_fund_trade_and_read_back(gql, make_user, services, session_factory):  # type: ignore[no-untyped-def]
    admin = await make_user(roles=["ADMIN"])
    buyer_user, seller_user = await make_user(), await make_user()
    m = await make_market(session_factory, maker_bps=0, taker_bps=10)
    await make_trader(session_factory, m, user_id=buyer_user.id)
    await make_trader(session_factory, m, user_id=seller_user.id, tokens="100")
    credit = (
        'mutation($u: UUID!) { creditCash(input: {userId: $u, amount: "500", currency: "%s", reference: "r1"}) '
        "{ cashBalances { currency available } errors { code } } }" % m.quote
    )
    for _ in range(2):  # idempotent per reference
        funded = await gql(credit, {"u": str(buyer_user.id)}, token=admin.token)
        assert gql.payload(funded, "creditCash", "cashBalances") == [{"currency": m.quote, "available": "500"}]
    assert gql.error_code(await gql(credit, {"u": str(buyer_user.id)}, token=buyer_user.token)) == "FORBIDDEN"

    ask = await gql(PLACE, order_input(m, "SELL", "10", "2.50", clientOrderId="s-1"), token=seller_user.token)
    assert ask["data"]["placeOrder"]["order"]["status"] == "NEW"
    book = await gql(
        "query($m: UUID!) { orderBook(marketId: $m, depth: 5) { sequence bids { price } asks { price quantity } } }",
        {"m": str(m.market_id)},
        token=buyer_user.token,
    )
    assert book["data"]["orderBook"]["asks"] == [{"price": "2.5", "quantity": "10"}]
    seq_before = book["data"]["orderBook"]["sequence"]
    bid = await gql(PLACE, order_input(m, "BUY", "4", "3.00"), token=buyer_user.token)
    assert bid["data"]["placeOrder"]["order"]["status"] == "FILLED"
    bal = await gql("{ myBalances { currency available reserved } }", token=buyer_user.token)
    assert bal["data"]["myBalances"] == [{"currency": m.quote, "available": "489.99", "reserved": "0"}]

    book = await gql(
        "query($m: UUID!) { orderBook(marketId: $m) { sequence asks { price quantity } } }",
        {"m": str(m.market_id)},
        token=buyer_user.token,
    )
    assert book["data"]["orderBook"]["asks"] == [{"price": "2.5", "quantity": "6"}]
    assert book["data"]["orderBook"]["sequence"] == seq_before + 1
    trades = await gql(
        "query($m: UUID!) { trades(marketId: $m, first: 5) { edges { node { price quantity takerSide } } } }",
        {"m": str(m.market_id)},
        token=buyer_user.token,
    )
    assert [e["node"] for e in trades["data"]["trades"]["edges"]] == [
        {"price": "2.5", "quantity": "4", "takerSide": "BUY"}
    ]
    mine = await gql("{ myTrades { edges { node { side fee settlement } } } }", token=seller_user.token)
    assert [e["node"] for e in mine["data"]["myTrades"]["edges"]] == [
        {"side": "SELL", "fee": "0", "settlement": "PENDING"}
    ]
    now = datetime.now(UTC)
    candles = await gql(
        "query($m: UUID!, $f: DateTime!) { candles(marketId: $m, interval: ONE_MINUTE, from: $f) "
        "{ open close volume tradeCount } }",
        {"m": str(m.market_id), "f": (now - timedelta(minutes=5)).isoformat()},
        token=seller_user.token,
    )
    assert candles["data"]["candles"] == [{"open": "2.5", "close": "2.5", "volume": "4", "tradeCount": 1}]
    open_orders = await gql(
        "{ myOrders(status: [NEW, PARTIALLY_FILLED]) { edges { node { clientOrderId filledQuantity status } } } }",
        token=seller_user.token,
    )
    assert [e["node"] for e in open_orders["data"]["myOrders"]["edges"]] == [
        {"clientOrderId": "s-1", "filledQuantity": "4", "status": "PARTIALLY_FILLED"}
    ]

    order_id = ask["data"]["placeOrder"]["order"]["id"]
    cancel = "mutation($id: UUID!) { cancelOrder(id: $id) { order { status reason } errors { code } } }"
    assert gql.error_code(await gql(cancel, {"id": order_id}, token=buyer_user.token)) == "NOT_FOUND"
    done = await gql(cancel, {"id": order_id}, token=seller_user.token)
    assert gql.payload(done, "cancelOrder", "order") == {"status": "CANCELED", "reason": "USER_CANCELED"}
    assert gql.error_code(await gql(cancel, {"id": order_id}, token=seller_user.token)) == "INVALID_STATE"


async def test_cancel_all_and_closing_a_market(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    admin, user = await make_user(roles=["ADMIN"]), await make_user()
    m = await make_market(session_factory)
    await make_trader(session_factory, m, user_id=user.id, cash="1000", tokens="100")
    for price in ("1.00", "1.10"):
        await gql(PLACE, order_input(m, "BUY", "5", price), token=user.token)
    await gql(PLACE, order_input(m, "SELL", "5", "9.00"), token=user.token)
    res = await gql(
        "mutation($m: UUID!) { cancelAllOrders(input: {marketId: $m}) { orders { status } errors { code } } }",
        {"m": str(m.market_id)},
        token=user.token,
    )
    assert [o["status"] for o in gql.payload(res, "cancelAllOrders", "orders")] == ["CANCELED"] * 3
    bal = await gql("{ myBalances { reserved } }", token=user.token)
    assert bal["data"]["myBalances"] == [{"reserved": "0"}]
    await gql(PLACE, order_input(m, "BUY", "5", "1.00"), token=user.token)
    await gql(
        "mutation($m: UUID!) { setMarketStatus(input: {marketId: $m, status: CLOSED}) { market { status } } }",
        {"m": str(m.market_id)},
        token=admin.token,
    )
    orders = await gql("{ myOrders(first: 1) { edges { node { status reason } } } }", token=user.token)
    assert orders["data"]["myOrders"]["edges"][0]["node"] == {"status": "CANCELED", "reason": "MARKET_CLOSED"}
    reopen = await gql(
        "mutation($m: UUID!) { setMarketStatus(input: {marketId: $m, status: OPEN}) { market { status } errors { code } } }",
        {"m": str(m.market_id)},
        token=admin.token,
    )
    assert gql.error_code(reopen) == "MARKET_CLOSED"


async def test_gtd_orders_expire_on_time(gql, make_user, session_factory, session):  # type: ignore[no-untyped-def]
    user = await make_user()
    m = await make_market(session_factory)
    await make_trader(session_factory, m, user_id=user.id, cash="1000")
    soon = datetime.now(UTC) + timedelta(seconds=30)
    placed = await gql(
        PLACE, order_input(m, "BUY", "5", "1.00", timeInForce="GTD", expiresAt=soon.isoformat()), token=user.token
    )
    assert placed["data"]["placeOrder"]["order"]["status"] == "NEW"
    assert await expire_due_orders(session, soon - timedelta(seconds=1)) == 0
    assert await expire_due_orders(session, soon) == 1
    orders = await gql("{ myOrders { edges { node { status reason reservedCash } } } }", token=user.token)
    assert orders["data"]["myOrders"]["edges"][0]["node"] == {
        "status": "EXPIRED",
        "reason": "GTD_EXPIRED",
        "reservedCash": "0",
    }
    bal = await gql("{ myBalances { available reserved } }", token=user.token)
    assert bal["data"]["myBalances"] == [{"available": "1000", "reserved": "0"}]
    async with session_factory() as s:
        n = (
            await s.execute(
                select(func.count())
                .select_from(AuditLog)
                .where(
                    AuditLog.action.in_(["order.place", "order.expired"]),
                    AuditLog.target_id == placed["data"]["placeOrder"]["order"]["id"],
                )
            )
        ).scalar_one()
    assert n == 2


async def test_candles_roll_up_matches_the_live_aggregate(session_factory, session):  # type: ignore[no-untyped-def]
    from models.trading import OrderType, Side
    from resolvers.trading import candles
    from resolvers.trading.orders import OrderRequest, place_order

    m = await make_market(session_factory, maker_bps=0, taker_bps=0)
    seller = await make_trader(session_factory, m, tokens="100")
    buyer = await make_trader(session_factory, m, cash="1000")
    t0 = datetime(2026, 1, 1, 10, 0, 5, tzinfo=UTC)
    for i, price in enumerate(["2.00", "3.00", "1.00"]):
        at = t0 + timedelta(minutes=2 * (i // 2))
        await place_order(
            session,
            seller.user_id,
            OrderRequest(m.market_id, Side.SELL, OrderType.LIMIT, Decimal(2), Decimal(price)),
            now=at,
        )
        await place_order(
            session,
            buyer.user_id,
            OrderRequest(m.market_id, Side.BUY, OrderType.LIMIT, Decimal(2), Decimal(price)),
            now=at,
        )
    end = t0 + timedelta(hours=1)
    live = await candles.candles(session, m.market_id, candles.CandleInterval.ONE_MINUTE, t0 - timedelta(hours=1), end)
    assert [(c.open, c.high, c.low, c.close, c.volume, c.trade_count) for c in live] == [
        (2, 3, 2, 3, 4, 2),
        (1, 1, 1, 1, 2, 1),
    ]
    assert await candles.roll_up(session, m.market_id, candles.CandleInterval.ONE_MINUTE, now=end) == 2
    assert await candles.roll_up(session, m.market_id, candles.CandleInterval.ONE_MINUTE, now=end) == 0
    stored = await candles.candles(
        session, m.market_id, candles.CandleInterval.ONE_MINUTE, t0 - timedelta(hours=1), end
    )
    assert stored == live
