"""Designated market makers: their fee tier applies to their fills (a maker rebate is paid from FEES and the ledger
still balances, also when a settlement fails and is reversed), and their quoting obligations are sampled and
reported."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from core.errors import BadUserInput, NotFound
from models.ledger import AccountKind, LedgerAccount
from models.trading import Market, MarketStatus, OrderType, SettlementInstruction, Side, Trade
from resolvers import ledger
from resolvers.trading import market_makers
from resolvers.trading.market_makers import MakerSpec
from resolvers.trading.orders import OrderRequest, cancel_orders, place_order
from resolvers.trading.settlement import record_transfer_result
from tests.trading.factories import make_market, make_trader, make_user
from tests.trading.live import committed_sessions

START_CASH = Decimal("100000")
REBATE = MakerSpec(
    maker_fee_bps=-5, taker_fee_bps=10, max_spread_bps=200, min_quote_size=Decimal("5"), min_uptime=Decimal("0.5")
)


def limit(m, side, qty, price):  # type: ignore[no-untyped-def]
    return OrderRequest(m.market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price))


async def place(sf, user, req, now=None):  # type: ignore[no-untyped-def]
    async with sf() as s:
        return (await place_order(s, user, req, now=now)).order


async def designate(sf, m, user_id, spec=REBATE):  # type: ignore[no-untyped-def]
    admin = await make_user(sf, ["ADMIN"])
    async with sf() as s:
        return await market_makers.set_market_maker(s, admin, m.market_id, user_id, spec, None)


async def fees_account(s, currency):  # type: ignore[no-untyped-def]
    return (
        await s.execute(
            select(LedgerAccount.balance).where(
                LedgerAccount.owner_id.is_(None),
                LedgerAccount.kind == AccountKind.FEES,
                LedgerAccount.currency == currency,
            )
        )
    ).scalar_one_or_none() or Decimal(0)


async def test_rebates_keep_the_ledger_balanced_under_concurrent_trading(module_database_url):  # type: ignore[no-untyped-def]
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf, tick="0.01", maker_bps=10, taker_bps=20)
        maker = await make_trader(sf, m, cash=START_CASH, tokens="10000")
        takers = [await make_trader(sf, m, cash=START_CASH, tokens="10000") for _ in range(5)]
        await designate(sf, m, maker.user_id)

        async def quote() -> None:
            for i in range(30):
                await place(sf, maker.user_id, limit(m, Side.BUY, "3", Decimal("9.90") - Decimal(i % 3) / 100))
                await place(sf, maker.user_id, limit(m, Side.SELL, "3", Decimal("10.10") + Decimal(i % 3) / 100))

        async def take(n: int) -> None:
            rng = random.Random(n)
            for _ in range(12):
                side = rng.choice([Side.BUY, Side.SELL])
                price = Decimal("10.20") if side is Side.BUY else Decimal("9.80")
                await place(sf, takers[n].user_id, limit(m, side, rng.randint(1, 4), price))

        await asyncio.gather(quote(), *(take(n) for n in range(len(takers))))
        async with sf() as s:
            trades = (await s.execute(select(Trade).where(Trade.market_id == m.market_id))).scalars().all()
            assert len(trades) > 10
            users = [maker.user_id] + [t.user_id for t in takers]
            for t in trades:
                maker_user = t.seller_id if t.taker_side is Side.BUY else t.buyer_id
                notional = t.price * t.quantity
                if maker_user == maker.user_id:  # the rebate: -5 bps, rounded toward zero
                    assert t.maker_fee == -(notional * 5 / 10000).quantize(Decimal("1e-18"), rounding="ROUND_DOWN")
                else:  # takers trading with each other pay the market's fees
                    assert t.maker_fee == (notional * 10 / 10000).quantize(Decimal("1e-18"), rounding="ROUND_DOWN")
                taker_user = t.buyer_id if t.taker_side is Side.BUY else t.seller_id
                assert t.taker_fee == (notional * (10 if taker_user == maker.user_id else 20) / 10000).quantize(
                    Decimal("1e-18"), rounding="ROUND_DOWN"
                )
            assert any(t.maker_fee < 0 for t in trades)
            assert (await ledger.total_by_currency(s))[m.quote] == 0
            assert await fees_account(s, m.quote) == sum((t.maker_fee + t.taker_fee for t in trades), Decimal(0))
            for user in users:
                bal = {b.currency: b for b in await ledger.balances(s, user)}[m.quote]
                bought = sum(
                    (
                        t.price * t.quantity + (t.taker_fee if t.taker_side is Side.BUY else t.maker_fee)
                        for t in trades
                        if t.buyer_id == user
                    ),
                    Decimal(0),
                )
                sold = sum(
                    (
                        t.price * t.quantity - (t.taker_fee if t.taker_side is Side.SELL else t.maker_fee)
                        for t in trades
                        if t.seller_id == user
                    ),
                    Decimal(0),
                )
                assert bal.total == START_CASH - bought + sold
            # a failed settlement reverses a rebated trade exactly: the ledger still sums to zero
            rebated = next(t for t in trades if t.maker_fee < 0)
            instruction = (
                await s.execute(select(SettlementInstruction.id).where(SettlementInstruction.trade_id == rebated.id))
            ).scalar_one()
            fees_before = await fees_account(s, m.quote)
        async with sf() as s:
            await record_transfer_result(s, instruction, confirmed=False, reason="test revert")
        async with sf() as s:
            assert (await ledger.total_by_currency(s))[m.quote] == 0
            assert await fees_account(s, m.quote) == fees_before - rebated.maker_fee - rebated.taker_fee


async def test_quoting_obligations_are_sampled_and_reported(session_factory):  # type: ignore[no-untyped-def]
    sf = session_factory
    m = await make_market(sf, maker_bps=10, taker_bps=20)
    good = await make_trader(sf, m, cash=START_CASH, tokens="1000")
    one_sided = await make_trader(sf, m, cash=START_CASH, tokens="1000")
    taker = await make_trader(sf, m, cash=START_CASH, tokens="1000")
    await designate(sf, m, good.user_id)
    await designate(sf, m, one_sided.user_id)
    await place(sf, good.user_id, limit(m, Side.BUY, "5", "9.95"))
    ask = await place(sf, good.user_id, limit(m, Side.SELL, "5", "10.05"))  # spread 100 bps <= 200
    await place(sf, one_sided.user_id, limit(m, Side.BUY, "10", "9.99"))
    t0 = datetime.now(UTC)
    async with sf() as s:
        assert await market_makers.sample_quotes(s, t0) == 2
    await place(sf, taker.user_id, limit(m, Side.BUY, "2", "10.05"))  # good's ask drops to 3 < 5
    async with sf() as s:
        assert await market_makers.sample_quotes(s, t0 + timedelta(seconds=10)) == 2
        await cancel_orders(s, good.user_id, m.market_id, [ask.id], reason="USER_CANCELED")
    async with sf() as s:
        assert await market_makers.sample_quotes(s, t0 + timedelta(seconds=20)) == 2
    await place(sf, good.user_id, limit(m, Side.SELL, "5", "10.10"))  # spread ~150 bps: compliant again
    async with sf() as s:
        assert await market_makers.sample_quotes(s, t0 + timedelta(seconds=30)) == 2
        report = {
            p.user_id: p
            for p in await market_makers.report(s, m.market_id, t0 - timedelta(minutes=1), t0 + timedelta(minutes=1))
        }
    g, o = report[good.user_id], report[one_sided.user_id]
    assert (g.samples, g.compliant_samples, g.uptime, g.meets_obligations) == (4, 2, Decimal("0.5"), True)
    assert g.two_sided_samples == 3 and g.average_spread_bps is not None
    assert (o.samples, o.compliant_samples, o.uptime, o.meets_obligations) == (4, 0, 0, False)
    assert g.maker_volume == Decimal("20.1") and g.maker_fees == Decimal("-0.01005")
    assert o.maker_volume == 0 and o.taker_volume == 0
    # a halted market is not sampled; a removed maker neither, and trades at the market's fees again
    async with sf() as s:
        await market_makers.remove_market_maker(
            s, (await make_user(sf, ["ADMIN"])), m.market_id, one_sided.user_id, None
        )
        assert await market_makers.sample_quotes(s, t0 + timedelta(seconds=40)) == 1
        await s.execute(Market.__table__.update().where(Market.id == m.market_id).values(status=MarketStatus.HALTED))
        await s.commit()
        assert await market_makers.sample_quotes(s, t0 + timedelta(seconds=50)) == 0


async def test_market_maker_tiers_are_validated(session_factory):  # type: ignore[no-untyped-def]
    sf = session_factory
    m = await make_market(sf, maker_bps=10, taker_bps=20)
    user = await make_user(sf)
    for bad, field in (
        (MakerSpec(25, 10, 100, Decimal(1), Decimal("0.9")), "makerFeeBps"),  # above the market's max
        (MakerSpec(-1001, 10, 100, Decimal(1), Decimal("0.9")), "makerFeeBps"),
        (MakerSpec(-5, -1, 100, Decimal(1), Decimal("0.9")), "takerFeeBps"),
        (MakerSpec(-5, 10, 0, Decimal(1), Decimal("0.9")), "maxSpreadBps"),
        (MakerSpec(-5, 10, 100, Decimal(0), Decimal("0.9")), "minQuoteSize"),
        (MakerSpec(-5, 10, 100, Decimal(1), Decimal("1.5")), "minUptime"),
    ):
        with pytest.raises(BadUserInput) as e:
            await designate(sf, m, user, bad)
        assert e.value.extensions["field"] == field
    with pytest.raises(NotFound):
        await designate(sf, m, uuid.uuid4())
    assert (await designate(sf, m, user)).maker_fee_bps == -5
