"""cancelAllOrders racing placeOrder on separate connections (committed data): each order is canceled at most once,
every reservation is released exactly once, nobody else's orders are touched, and the ledger stays balanced."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.errors import NotFound
from models.identity import AuditLog
from models.ledger import LedgerTransaction
from models.trading import OPEN_STATUSES, Order, OrderStatus, OrderType, Side
from resolvers import ledger
from resolvers.trading.orders import OrderRequest, cancel_orders, place_order
from tests.trading.factories import make_market, make_trader
from tests.trading.live import committed_sessions

PLACERS = 6
ORDERS_EACH = 8
CANCELERS = 3
CANCELS_EACH = 4


async def test_cancel_all_races_place_order(module_database_url):  # type: ignore[no-untyped-def]
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf, maker_bps=10, taker_bps=20)
        user = await make_trader(sf, m, cash="100000")
        other = await make_trader(sf, m, tokens="100")
        async with sf() as s:  # someone else's resting ask, far above every bid: must survive every cancelAll
            theirs = (
                await place_order(
                    s, other.user_id, OrderRequest(m.market_id, Side.SELL, OrderType.LIMIT, Decimal("5"), Decimal("99"))
                )
            ).order

        async def placer(n: int) -> list[uuid.UUID]:
            ids = []
            for i in range(ORDERS_EACH):
                async with sf() as s:
                    placed = await place_order(
                        s,
                        user.user_id,
                        OrderRequest(
                            m.market_id,
                            Side.BUY,
                            OrderType.LIMIT,
                            Decimal(1 + i % 3),
                            Decimal(10 + n) / 2,
                            client_order_id=f"p{n}-{i}",
                        ),
                    )
                    assert placed.order.status is OrderStatus.NEW
                    ids.append(placed.order.id)
            return ids

        async def canceler() -> list[uuid.UUID]:
            done = []
            for _ in range(CANCELS_EACH):
                async with sf() as s:
                    views, _ = await cancel_orders(s, user.user_id, m.market_id, None, reason="USER_CANCELED")
                    assert all(v.status is OrderStatus.CANCELED and v.reserved_cash == 0 for v in views)
                    done += [v.id for v in views]
                await asyncio.sleep(0)
            return done

        results = await asyncio.gather(*(placer(n) for n in range(PLACERS)), *(canceler() for _ in range(CANCELERS)))
        placed_ids = {i for r in results[:PLACERS] for i in r}
        canceled = [i for r in results[PLACERS:] for i in r]
        assert len(canceled) == len(set(canceled)), "an order was canceled twice"
        async with sf() as s:  # what the race left open goes now
            last, _ = await cancel_orders(s, user.user_id, m.market_id, None, reason="USER_CANCELED")
        canceled += [v.id for v in last]
        assert sorted(canceled) == sorted(placed_ids) and len(placed_ids) == PLACERS * ORDERS_EACH

        async with sf() as s:
            assert (
                await s.scalar(
                    select(func.count())
                    .select_from(Order)
                    .where(Order.user_id == user.user_id, Order.status.in_(OPEN_STATUSES))
                )
                == 0
            )
            assert await s.scalar(select(func.sum(Order.reserved_cash)).where(Order.user_id == user.user_id)) == 0
            [cash] = await ledger.balances(s, user.user_id)
            assert (cash.available, cash.reserved) == (Decimal("100000"), 0)
            # one reservation and one release per order, never more
            for kind in ("RESERVE", "RELEASE"):
                assert await s.scalar(
                    select(func.count())
                    .select_from(LedgerTransaction)
                    .where(
                        LedgerTransaction.kind == kind,
                        LedgerTransaction.reference.in_([f"order:{i}:{kind.lower()}" for i in placed_ids]),
                    )
                ) == len(placed_ids)
            assert await s.scalar(
                select(func.count())
                .select_from(AuditLog)
                .where(AuditLog.action == "order.canceled", AuditLog.actor_id == user.user_id)
            ) == len(placed_ids)
            assert (await s.get(Order, theirs.id)).status is OrderStatus.NEW  # type: ignore[union-attr]
            assert (await ledger.total_by_currency(s))[m.quote] == 0


async def test_cancel_all_in_an_unknown_market_is_not_found(session, make_user):  # type: ignore[no-untyped-def]
    user = await make_user()
    with pytest.raises(NotFound):
        await cancel_orders(session, user.id, uuid.uuid4(), None, reason="USER_CANCELED")
