"""core.transactions against a real deadlock: a second connection holds the buyer's ledger account while
placeOrder holds the market lock, then asks for the market lock, so Postgres aborts placeOrder's transaction
(40P01). placeOrder runs again from the start in a fresh transaction and succeeds once; with no attempts left the
caller gets CONFLICT and nothing is written."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import Conflict
from core.transactions import retry_transient, transient_sqlstate
from models.trading import Order, OrderStatus, OrderType, Side, Trade
from resolvers import ledger
from resolvers.trading import book
from resolvers.trading.orders import OrderRequest, place_order
from tests.deadlock import app_sessions as factory  # noqa: F401  (a fixture)
from tests.deadlock import deadlock_once
from tests.trading.factories import make_market, make_trader

T = TypeVar("T")


def _deadlock(
    database_url: str, buyer_id: uuid.UUID, currency: str, market_id: uuid.UUID, work: Callable[[], Awaitable[T]]
) -> Awaitable[asyncio.Future[T]]:
    """Hold the buyer's AVAILABLE account; placeOrder waits for it holding the market lock; then take the market
    lock."""
    return deadlock_once(
        database_url,
        (
            "SELECT id FROM ledger_accounts WHERE owner_id = $1 AND kind = 'AVAILABLE' AND currency = $2 FOR UPDATE",
            (buyer_id, currency),
        ),
        ("SELECT pg_advisory_xact_lock($1)", (book.lock_key(market_id),)),
        work,
    )


async def _setup(factory: async_sessionmaker[AsyncSession]):  # type: ignore[no-untyped-def]
    m = await make_market(factory, maker_bps=0, taker_bps=0)
    seller = await make_trader(factory, m, tokens="10")
    buyer = await make_trader(factory, m, cash="100")
    async with factory() as s:
        await place_order(
            s, seller.user_id, OrderRequest(m.market_id, Side.SELL, OrderType.LIMIT, Decimal("2"), Decimal("5"))
        )
    return m, buyer


def _buy(m, client_order_id: str) -> OrderRequest:  # type: ignore[no-untyped-def]
    return OrderRequest(
        m.market_id, Side.BUY, OrderType.LIMIT, Decimal("2"), Decimal("5"), client_order_id=client_order_id
    )


async def test_place_order_runs_again_after_a_real_deadlock(module_database_url, factory, caplog):  # type: ignore[no-untyped-def]
    m, buyer = await _setup(factory)
    caplog.set_level(logging.INFO, logger="rwa.db")
    async with factory() as s:
        placing = await _deadlock(
            module_database_url,
            buyer.user_id,
            m.quote,
            m.market_id,
            lambda: place_order(s, buyer.user_id, _buy(m, "deadlocked")),
        )
        placed = await placing
    assert placed.order.status is OrderStatus.FILLED and not placed.replayed
    assert any("40P01" in r.getMessage() and "attempt 1 of" in r.getMessage() for r in caplog.records)
    async with factory() as s:  # written once: one order, one trade, the cash moved once, the ledger balanced
        assert (
            await s.scalar(
                select(func.count())
                .select_from(Order)
                .where(Order.user_id == buyer.user_id, Order.client_order_id == "deadlocked")
            )
            == 1
        )
        assert await s.scalar(select(func.count()).select_from(Trade).where(Trade.buyer_id == buyer.user_id)) == 1
        [cash] = await ledger.balances(s, buyer.user_id)
        assert (cash.available, cash.reserved) == (Decimal("90"), 0)
        assert (await ledger.total_by_currency(s))[m.quote] == 0


async def test_no_attempt_left_is_a_conflict_and_writes_nothing(module_database_url, factory):  # type: ignore[no-untyped-def]
    m, buyer = await _setup(factory)
    async with factory() as s:
        placing = await _deadlock(
            module_database_url,
            buyer.user_id,
            m.quote,
            m.market_id,
            lambda: retry_transient(s, lambda: place_order(s, buyer.user_id, _buy(m, "given-up")), attempts=1),
        )
        with pytest.raises(Conflict) as exc:
            await placing
    assert exc.value.extensions["reason"] == "TRANSIENT_DB_CONFLICT"
    assert transient_sqlstate(exc.value) == "40P01"  # the real deadlock is its cause
    async with factory() as s:
        assert await s.scalar(select(func.count()).select_from(Order).where(Order.user_id == buyer.user_id)) == 0
        [cash] = await ledger.balances(s, buyer.user_id)
        assert (cash.available, cash.reserved) == (Decimal("100"), 0)


async def test_other_errors_are_not_retried(session):  # type: ignore[no-untyped-def]
    calls = []

    async def unit() -> None:
        calls.append(1)
        raise Conflict("no", reason="INSUFFICIENT_FUNDS")

    with pytest.raises(Conflict):
        await retry_transient(session, unit)
    assert calls == [1]
