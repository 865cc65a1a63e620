"""myTrades shows where the token leg is on chain (tx hash, block, operation state), and mySettlements tells both
sides when the settlement finished, only once the completion committed (never for a rolled-back one)."""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket

from agent.effects import live
from models.trading import Side
from resolvers.trading.orders import place_order
from resolvers.viewer import viewer_from_headers
from schema import build_schema
from server.context import Context
from tests.agent_domain.helpers import broadcast, complete, op_by_ref
from tests.trading.factories import make_market, make_trader
from tests.trading.test_orders_flow import limit
from tests.trading.test_settlement_failure import trade_of

MY_TRADES = """{ myTrades(first: 5) { edges { node { id settlement settlementTxHash settlementBlock
  settlementOperationState settlementFailureReason } } } }"""
SUB = "subscription { mySettlements { tradeId settlement txHash blockNumber failureReason } }"


async def _never() -> None:
    await asyncio.Future()


async def subscribe(services, token: str, document: str = SUB):  # type: ignore[no-untyped-def]
    viewer = await viewer_from_headers(services, f"Bearer {token}", None, "127.0.0.1")
    socket = WebSocket(
        {"type": "websocket", "path": "/graphql", "headers": [], "client": ("127.0.0.1", 50003)},
        receive=_never,
        send=_never,
    )  # type: ignore[arg-type]
    context = Context(services, socket, socket, viewer)
    return await build_schema(services.settings).subscribe(document, context_value=context), context


async def test_my_trades_and_my_settlements(gql, make_user, services, session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    seller_user, buyer_user = await make_user(), await make_user()
    seller = await make_trader(session_factory, m, tokens="10", user_id=seller_user.id)
    buyer = await make_trader(session_factory, m, cash="1000", user_id=buyer_user.id)
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "4", "5.00"))
    await place_order(session, seller.user_id, limit(m, Side.SELL, "4", "5.00"))
    await session.commit()
    trade, instruction = await trade_of(session, seller.wallet)
    [edge] = (await gql(MY_TRADES, token=seller_user.token))["data"]["myTrades"]["edges"]
    assert edge["node"] | {"id": None} == {
        "id": None,
        "settlement": "PENDING",
        "settlementTxHash": None,
        "settlementBlock": None,
        "settlementOperationState": "PENDING",
        "settlementFailureReason": None,
    }
    op = await op_by_ref(session, f"settlement:{instruction.id}")
    txh = await broadcast(session, op)
    await session.commit()
    [edge] = (await gql(MY_TRADES, token=buyer_user.token))["data"]["myTrades"]["edges"]
    assert (edge["node"]["settlementTxHash"], edge["node"]["settlementOperationState"]) == (txh, "BROADCAST")

    live.configure(services.redis, services.settings.redis_prefix)
    stream, ctx = await subscribe(services, buyer_user.token)
    try:
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.3)  # the Redis subscription is up
        # a completion that rolls back announces nothing
        async with session_factory() as s:
            rolled = await op_by_ref(s, op.business_ref)
            await complete(s, rolled, confirmed=False, reason="rolled back")
            await s.rollback()
        async with session_factory() as s:
            done = await op_by_ref(s, op.business_ref)
            done.mined_tx_hash, done.mined_block = txh, 77
            await complete(s, done, confirmed=True)
            await s.commit()
        await live.drain()
        update = await asyncio.wait_for(first, 5)
        assert update.data["mySettlements"] == {
            "tradeId": str(trade.id),
            "settlement": "SETTLED",
            "txHash": txh,
            "blockNumber": 77,
            "failureReason": None,
        }
    finally:
        live.configure(None)
        await stream.aclose()
        await ctx.close()
    [edge] = (await gql(MY_TRADES, token=buyer_user.token))["data"]["myTrades"]["edges"]
    assert edge["node"]["settlement"] == "SETTLED" and edge["node"]["settlementBlock"] == 77
