"""Risk controls, one at a time: each refusal is a stored REJECTED order with its reason that changes no balance;
MARKET orders fill only inside the band; the circuit breaker halts the market with its book intact and resumes;
the kill switch halts and cancels everything, releasing reservations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.errors import BadUserInput, Conflict
from models.identity import AuditLog
from models.trading import (
    InvestorDailyNotional,
    Market,
    MarketRiskLimits,
    MarketStatus,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    Trade,
)
from resolvers import ledger
from resolvers.trading import risk_admin
from resolvers.trading.orders import OrderRequest, cancel_orders, place_order
from tests.trading.factories import make_market, make_trader, make_user


def limit(m, side, qty, price, **kw):  # type: ignore[no-untyped-def]
    return OrderRequest(m.market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price), **kw)


async def configure(sf, m, **limits):  # type: ignore[no-untyped-def]
    admin = await make_user(sf, ["ADMIN"])
    async with sf() as s:
        return await risk_admin.set_limits(s, admin, m.market_id, risk_admin.LimitsSpec(**limits), None)


async def place(sf, user, req, now=None):  # type: ignore[no-untyped-def]
    async with sf() as s:
        return (await place_order(s, user, req, now=now)).order


async def test_band_order_size_and_notional(session_factory):  # type: ignore[no-untyped-def]
    sf = session_factory
    m = await make_market(sf)
    seller = await make_trader(sf, m, tokens="1000")
    buyer = await make_trader(sf, m, cash="100000")
    await configure(
        sf,
        m,
        price_band_bps=1000,
        reference_price=Decimal("10"),
        max_order_quantity=Decimal("50"),
        max_order_notional=Decimal("400"),
    )
    # before any trade the band is around the reference price: 9..11
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "1", "11.01"))).reason == "PRICE_OUTSIDE_BAND"
    assert (await place(sf, seller.user_id, limit(m, Side.SELL, "1", "8.99"))).reason == "PRICE_OUTSIDE_BAND"
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "51", "9"))).reason == "MAX_ORDER_QUANTITY_EXCEEDED"
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "41", "10"))).reason == "MAX_ORDER_NOTIONAL_EXCEEDED"
    async with sf() as s:
        [cash] = await ledger.balances(s, buyer.user_id)
        assert (cash.available, cash.reserved) == (Decimal("100000"), 0)  # refusals hold nothing
    # a trade at 10.50 moves the reference: 9.45..11.55
    assert (await place(sf, seller.user_id, limit(m, Side.SELL, "5", "10.50"))).status is OrderStatus.NEW
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "5", "10.50"))).status is OrderStatus.FILLED
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "1", "11.50"))).status is OrderStatus.NEW
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "1", "11.60"))).reason == "PRICE_OUTSIDE_BAND"
    async with sf() as s:
        rejected = await s.scalar(
            select(func.count())
            .select_from(Order)
            .where(Order.market_id == m.market_id, Order.status == OrderStatus.REJECTED)
        )
        assert rejected == 5


async def test_market_orders_fill_only_inside_the_band(session_factory):  # type: ignore[no-untyped-def]
    sf = session_factory
    m = await make_market(sf)
    seller = await make_trader(sf, m, tokens="1000")
    buyer = await make_trader(sf, m, cash="100000")
    await configure(sf, m, price_band_bps=500, reference_price=Decimal("10"))  # 9.50..10.50
    for price in ("10.00", "10.50"):
        await place(sf, seller.user_id, limit(m, Side.SELL, "2", price))
    async with sf() as s:  # an ask above the band (placed before the band was this tight)
        s.add(
            Order(
                id=uuid.uuid4(),
                market_id=m.market_id,
                user_id=seller.user_id,
                side=Side.SELL,
                type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTC,
                price=Decimal("12"),
                quantity=Decimal(5),
                filled_quantity=Decimal(0),
                status=OrderStatus.NEW,
                wallet_address=seller.wallet,
                reserved_cash=Decimal(0),
            )
        )
        await s.commit()
    order = await place(
        sf, buyer.user_id, OrderRequest(m.market_id, Side.BUY, OrderType.MARKET, Decimal("9"), Decimal("100"))
    )
    assert (order.status, order.filled_quantity, order.reason) == (OrderStatus.CANCELED, 4, "NO_LIQUIDITY")
    async with sf() as s:
        prices = (await s.execute(select(Trade.price).where(Trade.market_id == m.market_id))).scalars().all()
    assert sorted(prices) == [Decimal("10"), Decimal("10.5")]


async def test_daily_notional_counts_filled_and_resting_value_and_cancels_give_it_back(session_factory):  # type: ignore[no-untyped-def]
    sf = session_factory
    m = await make_market(sf)
    buyer = await make_trader(sf, m, cash="100000")
    await configure(sf, m, daily_notional_limit=Decimal("100"))
    first = await place(sf, buyer.user_id, limit(m, Side.BUY, "6", "10"))  # 60 resting
    assert first.status is OrderStatus.NEW
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "5", "10"))).reason == "DAILY_NOTIONAL_LIMIT_EXCEEDED"
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "4", "10"))).status is OrderStatus.NEW  # 100
    async with sf() as s:
        await cancel_orders(s, buyer.user_id, m.market_id, [first.id], reason="USER_CANCELED")
        used = await s.scalar(
            select(InvestorDailyNotional.notional).where(InvestorDailyNotional.user_id == buyer.user_id)
        )
    assert used == 40
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "6", "10"))).status is OrderStatus.NEW


async def test_max_position_counts_holdings_open_buys_and_unsettled_trades(session_factory):  # type: ignore[no-untyped-def]
    sf = session_factory
    m = await make_market(sf)
    seller = await make_trader(sf, m, tokens="1000")
    buyer = await make_trader(sf, m, cash="100000", tokens="3")  # holds 3 already
    await configure(sf, m, max_position=Decimal("10"))
    await place(sf, seller.user_id, limit(m, Side.SELL, "4", "10"))
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "4", "10"))).status is OrderStatus.FILLED  # 7
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "2", "9"))).status is OrderStatus.NEW  # 9
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "2", "9"))).reason == "MAX_POSITION_EXCEEDED"
    assert (await place(sf, buyer.user_id, limit(m, Side.BUY, "1", "9"))).status is OrderStatus.NEW  # 10
    # selling is never limited by the maximum position
    assert (await place(sf, buyer.user_id, limit(m, Side.SELL, "3", "20"))).status is OrderStatus.NEW


async def test_circuit_breaker_halts_then_resumes_with_the_book_intact(session_factory):  # type: ignore[no-untyped-def]
    sf = session_factory
    m = await make_market(sf)
    seller = await make_trader(sf, m, tokens="1000")
    buyer = await make_trader(sf, m, cash="100000")
    await configure(sf, m, breaker_move_bps=1000, breaker_window_s=300, breaker_halt_s=60)
    t0 = datetime.now(UTC)
    for price in ("10", "10.5", "11", "11.5"):
        await place(sf, seller.user_id, limit(m, Side.SELL, "1", price), now=t0)
    resting_bid = await place(sf, buyer.user_id, limit(m, Side.BUY, "1", "5"), now=t0)
    await place(sf, buyer.user_id, limit(m, Side.BUY, "1", "10"), now=t0)  # the reference: 10
    sweep = await place(sf, buyer.user_id, limit(m, Side.BUY, "3", "11.5"), now=t0 + timedelta(seconds=1))
    # 10.5 and 11 are within 10 % of 10; 11.5 is not: the sweep stops there and the market halts
    assert (sweep.status, sweep.filled_quantity, sweep.reason) == (OrderStatus.CANCELED, 2, "CIRCUIT_BREAKER")
    assert sweep.reserved_cash == 0
    async with sf() as s:
        assert (await s.get(Market, m.market_id)).status is MarketStatus.HALTED  # type: ignore[union-attr]
        state = await s.get(MarketRiskLimits, m.market_id)
        assert state.halt_reason == "CIRCUIT_BREAKER"  # type: ignore[union-attr]
        assert (
            await s.scalar(
                select(func.count())
                .select_from(AuditLog)
                .where(AuditLog.action == "market.circuit_breaker", AuditLog.target_id == str(m.market_id))
            )
            == 1
        )
    during = await place(sf, buyer.user_id, limit(m, Side.BUY, "1", "11.5"), now=t0 + timedelta(seconds=30))
    assert during.reason == "MARKET_NOT_OPEN"
    async with sf() as s:  # the book is intact: the 11.5 ask and the 5 bid still rest
        open_ids = set(
            (
                await s.execute(select(Order.id).where(Order.market_id == m.market_id, Order.status == OrderStatus.NEW))
            ).scalars()
        )
    assert resting_bid.id in open_ids and len(open_ids) == 2
    # the halt ends when due: the next placement reopens the market under the lock
    after = await place(sf, seller.user_id, limit(m, Side.SELL, "1", "12"), now=t0 + timedelta(seconds=62))
    assert after.status is OrderStatus.NEW
    async with sf() as s:
        assert (await s.get(Market, m.market_id)).status is MarketStatus.OPEN  # type: ignore[union-attr]


async def test_breaker_with_nothing_filled_rejects_and_the_job_resumes(session_factory):  # type: ignore[no-untyped-def]
    sf = session_factory
    m = await make_market(sf)
    seller = await make_trader(sf, m, tokens="1000")
    buyer = await make_trader(sf, m, cash="100000")
    await configure(sf, m, breaker_move_bps=500, breaker_window_s=60, breaker_halt_s=30)
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    await place(sf, seller.user_id, limit(m, Side.SELL, "1", "10"), now=t0)
    await place(sf, buyer.user_id, limit(m, Side.BUY, "1", "10"), now=t0)  # last trade before the window: 10
    await place(sf, seller.user_id, limit(m, Side.SELL, "1", "11"), now=t0)
    t1 = t0 + timedelta(minutes=5)
    fok = await place(sf, buyer.user_id, limit(m, Side.BUY, "1", "11", time_in_force=TimeInForce.FOK), now=t1)
    assert (fok.status, fok.filled_quantity, fok.reason) == (OrderStatus.REJECTED, 0, "CIRCUIT_BREAKER")
    async with sf() as s:
        assert await risk_admin.resume_due_markets(s, t1 + timedelta(seconds=29)) == 0
        assert await risk_admin.resume_due_markets(s, t1 + timedelta(seconds=31)) == 1
        assert (await s.get(Market, m.market_id, populate_existing=True)).status is MarketStatus.OPEN  # type: ignore[union-attr]


async def test_kill_switch_halts_cancels_all_and_releases_cash(session_factory):  # type: ignore[no-untyped-def]
    sf = session_factory
    m = await make_market(sf)
    admin = await make_user(sf, ["ADMIN"])
    seller = await make_trader(sf, m, tokens="100")
    buyers = [await make_trader(sf, m, cash="1000") for _ in range(3)]
    for b in buyers:
        await place(sf, b.user_id, limit(m, Side.BUY, "5", "9"))
    await place(sf, seller.user_id, limit(m, Side.SELL, "5", "11"))
    async with sf() as s:
        killed = await risk_admin.kill_market(s, admin, m.market_id, "runaway algo", "req-1")
    assert (killed.status, killed.canceled) == (MarketStatus.HALTED, 4)
    async with sf() as s:
        orders = (await s.execute(select(Order).where(Order.market_id == m.market_id))).scalars().all()
        assert {(o.status, o.reason, o.reserved_cash) for o in orders} == {(OrderStatus.CANCELED, "KILL_SWITCH", 0)}
        for b in buyers:
            [cash] = await ledger.balances(s, b.user_id)
            assert (cash.available, cash.reserved) == (Decimal("1000"), 0)
        assert (
            await s.scalar(
                select(func.count())
                .select_from(AuditLog)
                .where(AuditLog.action == "order.canceled", AuditLog.actor_id == admin)
            )
            == 4
        )
        assert (
            await s.scalar(
                select(func.count())
                .select_from(AuditLog)
                .where(AuditLog.action == "market.kill", AuditLog.actor_id == admin)
            )
            == 1
        )
    assert (await place(sf, buyers[0].user_id, limit(m, Side.BUY, "1", "9"))).reason == "MARKET_NOT_OPEN"
    async with sf() as s:  # no automatic resume after a kill
        assert await risk_admin.resume_due_markets(s, datetime.now(UTC) + timedelta(days=1)) == 0


async def test_bad_limits_are_typed_errors(session_factory):  # type: ignore[no-untyped-def]
    sf = session_factory
    m = await make_market(sf)
    with pytest.raises(BadUserInput) as e:
        await configure(sf, m, price_band_bps=100)  # no trade, no valuation, no reference price
    assert e.value.extensions["field"] == "referencePrice"
    with pytest.raises(BadUserInput):
        await configure(sf, m, breaker_move_bps=100, breaker_window_s=60)
    with pytest.raises(BadUserInput):
        await configure(sf, m, max_order_quantity=Decimal("-1"))
    with pytest.raises(BadUserInput):
        await configure(sf, m, price_band_bps=0, reference_price=Decimal(1))
    async with sf() as s:
        assert await s.get(MarketRiskLimits, m.market_id) is None
    async with sf() as s:
        await s.execute(Market.__table__.update().where(Market.id == m.market_id).values(status=MarketStatus.CLOSED))
        await s.commit()
    admin = await make_user(sf, ["ADMIN"])
    with pytest.raises(Conflict):
        async with sf() as s:
            await risk_admin.kill_market(s, admin, m.market_id, None, None)


async def test_market_orders_keep_their_cap_and_floor_without_limits(session_factory):  # type: ignore[no-untyped-def]
    """A market without risk limits matches a MARKET order at its own cap / floor (the band does not apply)."""
    sf = session_factory
    m = await make_market(sf)
    seller = await make_trader(sf, m, tokens="1000")
    buyer = await make_trader(sf, m, cash="100000")
    await place(sf, seller.user_id, limit(m, Side.SELL, "2", "10"))
    await place(sf, seller.user_id, limit(m, Side.SELL, "2", "12"))
    await place(sf, buyer.user_id, limit(m, Side.BUY, "2", "8"))
    await place(sf, buyer.user_id, limit(m, Side.BUY, "2", "6"))
    buy = await place(
        sf, buyer.user_id, OrderRequest(m.market_id, Side.BUY, OrderType.MARKET, Decimal(4), Decimal("11"))
    )
    assert (buy.status, buy.filled_quantity, buy.reason) == (OrderStatus.CANCELED, 2, "NO_LIQUIDITY")
    sell = await place(
        sf, seller.user_id, OrderRequest(m.market_id, Side.SELL, OrderType.MARKET, Decimal(4), Decimal("7"))
    )
    assert (sell.status, sell.filled_quantity, sell.reason) == (OrderStatus.CANCELED, 2, "NO_LIQUIDITY")
    async with sf() as s:
        prices = (await s.execute(select(Trade.price).where(Trade.market_id == m.market_id))).scalars().all()
    assert sorted(prices) == [Decimal("8"), Decimal("10")]
