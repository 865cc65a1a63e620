"""The per-market trade sequence (`trades.market_sequence`, the `trades` stream's sequence) stays 1, 2, 3... in
`seq` order whoever writes the trades: the batch write numbers its trades itself with one update of the market's
row (resolvers/trading/batch_sql.WRITE), one order placed alone gets its numbers from the trigger (migrations 0020,
0025), and both mix on one market and in one transaction."""

from __future__ import annotations

import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import text

from models.trading import OrderStatus, OrderType, Side
from resolvers.trading import orders, sequencer
from resolvers.trading.orders import OrderRequest
from tests.trading.factories import make_market, make_trader
from tests.trading.live import committed_sessions


def _req(market_id: uuid.UUID, side: Side, qty: str, price: str) -> OrderRequest:
    return OrderRequest(market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price), None, None, None)


async def _numbers(sf: Any, market_id: uuid.UUID) -> tuple[list[int], int]:
    """(the market's trades' market_sequence in seq order, markets.trade_sequence)"""
    async with sf() as s:
        seqs = (
            await s.execute(
                text("SELECT market_sequence FROM trades WHERE market_id = :m ORDER BY seq"), {"m": market_id}
            )
        ).scalars()
        counter = (
            await s.execute(text("SELECT trade_sequence FROM markets WHERE id = :m"), {"m": market_id})
        ).scalar_one()
        return list(seqs), counter


async def _batch(sf: Any, market_id: uuid.UUID, steps: list[tuple[Any, Side, str, str]]) -> list[Any]:
    jobs = [
        SimpleNamespace(user_id=t.user_id, req=_req(market_id, side, qty, price), request_id=None, now=None)
        for t, side, qty, price in steps
    ]
    async with sequencer._session(sf.kw["bind"]) as session:
        return await sequencer._together(session, market_id, jobs)


async def test_batches_and_single_orders_number_a_markets_trades_consecutively(module_database_url):  # type: ignore[no-untyped-def]
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf, tick="0.1", lot="1")
        other = await make_market(sf, tick="0.1", lot="1")  # its own numbering, untouched by the first's
        seller = await make_trader(sf, m, tokens="100")
        buyer = await make_trader(sf, m, cash="10000")
        other_seller = await make_trader(sf, other, tokens="100")
        other_buyer = await make_trader(sf, other, cash="10000")

        # one order alone (the trigger numbers its trade): 1
        async with sf() as s:
            await orders.place_alone(s, seller.user_id, _req(m.market_id, Side.SELL, "1", "10"))
        async with sf() as s:
            await orders.place_alone(s, buyer.user_id, _req(m.market_id, Side.BUY, "1", "10"))
        assert await _numbers(sf, m.market_id) == ([1], 1)

        # a batch without trades leaves the counter alone
        out = await _batch(sf, m.market_id, [(seller, Side.SELL, "3", "11"), (seller, Side.SELL, "2", "12")])
        assert [o.order.status for o in out] == [OrderStatus.NEW, OrderStatus.NEW]
        assert await _numbers(sf, m.market_id) == ([1], 1)

        # a batch whose one buy walks both resting sells (2 trades), then two crossings of its own orders: 2..5 in
        # fill order, each trade's event carrying its number
        out = await _batch(
            sf,
            m.market_id,
            [
                (buyer, Side.BUY, "5", "12"),
                (seller, Side.SELL, "1", "10"),
                (buyer, Side.BUY, "1", "10"),
                (seller, Side.SELL, "1", "10"),
                (buyer, Side.BUY, "1", "10"),
            ],
        )
        F, N = OrderStatus.FILLED, OrderStatus.NEW
        assert [o.order.status for o in out] == [F, N, F, N, F]
        assert await _numbers(sf, m.market_id) == ([1, 2, 3, 4, 5], 5)
        streamed = [e["sequence"] for o in out for ch, e in o.events.messages if ch.endswith(":trades")]
        assert streamed == [2, 3, 4, 5]

        # alone again after the batch: 6; and the other market starts at 1 from a batch
        async with sf() as s:
            await orders.place_alone(s, buyer.user_id, _req(m.market_id, Side.BUY, "1", "10"))
        async with sf() as s:
            await orders.place_alone(s, seller.user_id, _req(m.market_id, Side.SELL, "1", "10"))
        assert await _numbers(sf, m.market_id) == ([1, 2, 3, 4, 5, 6], 6)
        await _batch(sf, other.market_id, [(other_seller, Side.SELL, "2", "10"), (other_buyer, Side.BUY, "2", "10")])
        assert await _numbers(sf, other.market_id) == ([1], 1)
