"""Every risk control under concurrency (committed data, many placeOrder at once on separate sessions): the checks
run under the market lock (and the investor/token lock for positions), so no burst gets past a limit together."""

from __future__ import annotations

import asyncio
import random
import uuid
from decimal import Decimal

from sqlalchemy import func, select

from models.identity import AuditLog
from models.tokens import Token, TokenKind
from models.trading import Market, MarketStatus, Order, OrderStatus, OrderType, Side, Trade
from resolvers import ledger
from resolvers.trading import risk_admin
from resolvers.trading.orders import OrderRequest, place_order
from resolvers.unit_of_work import UnitOfWork
from tests.trading.factories import MarketSetup, make_market, make_trader, make_user, random_address
from tests.trading.live import committed_sessions

OPEN = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


async def configure(sf, m, **limits):  # type: ignore[no-untyped-def]
    admin = await make_user(sf, ["ADMIN"])
    async with sf() as s:
        await risk_admin.set_limits(s, admin, m.market_id, risk_admin.LimitsSpec(**limits), None)


async def place(sf, user, req):  # type: ignore[no-untyped-def]
    """In a unit of work, as the placeOrder mutation: through the market's sequencer (batched placements)."""
    async with sf() as s:
        return (await UnitOfWork(s).run(lambda: place_order(s, user, req))).order


def limit(m, side, qty, price):  # type: ignore[no-untyped-def]
    return OrderRequest(m.market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price))


async def second_market(sf, m: MarketSetup) -> MarketSetup:  # type: ignore[no-untyped-def]
    """The same token in another quote currency."""
    quote = f"EUR{uuid.uuid4().hex[:5].upper()}"
    market_id = uuid.uuid4()
    async with sf() as s:
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
        await s.flush()
        s.add(
            Market(
                id=market_id,
                symbol=f"RWA{market_id.hex[:6]}/{quote}",
                base_token_id=m.token_id,
                chain_id=m.chain_id,
                token_address=m.token_address,
                base_decimals=m.decimals,
                quote_currency=quote,
                tick_size=Decimal("0.01"),
                lot_size=Decimal(1),
                min_notional=Decimal(0),
                maker_fee_bps=10,
                taker_fee_bps=20,
                status=MarketStatus.OPEN,
                book_sequence=0,
            )
        )
        await s.commit()
    return MarketSetup(market_id, m.token_id, m.chain_id, m.token_address, m.registry, m.decimals, quote)


async def test_max_position_across_two_markets_of_the_token(module_database_url):  # type: ignore[no-untyped-def]
    async with committed_sessions(module_database_url) as sf:
        usd = await make_market(sf)
        eur = await second_market(sf, usd)
        seller = await make_trader(sf, usd, tokens="1000")
        buyer = await make_trader(sf, usd, cash="100000", tokens="2")
        async with sf() as s:
            await ledger.credit_deposit(s, buyer.user_id, Decimal("100000"), eur.quote, reference=f"t:{uuid.uuid4()}")
            await s.commit()
        for m in (usd, eur):
            await configure(sf, m, max_position=Decimal("20"))
        await place(sf, seller.user_id, limit(usd, Side.SELL, "100", "10"))
        # 16 buys of 3 at once: in USD they fill (unsettled legs), in EUR they rest (open buys); 2 + 6 x 3 = 20
        orders = await asyncio.gather(
            *(place(sf, buyer.user_id, limit(usd if i % 2 else eur, Side.BUY, "3", "10")) for i in range(16))
        )
        accepted = [o for o in orders if o.status is not OrderStatus.REJECTED]
        assert len(accepted) == 6
        assert {o.reason for o in orders if o.status is OrderStatus.REJECTED} == {"MAX_POSITION_EXCEEDED"}
        assert {o.status for o in accepted if o.market_id == usd.market_id} <= {OrderStatus.FILLED}
        assert {o.status for o in accepted if o.market_id == eur.market_id} <= {OrderStatus.NEW}


async def test_daily_notional_limit_under_a_burst(module_database_url):  # type: ignore[no-untyped-def]
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf)
        buyer = await make_trader(sf, m, cash="100000")
        seller = await make_trader(sf, m, tokens="1000")
        await configure(sf, m, daily_notional_limit=Decimal("1000"))
        await place(sf, seller.user_id, limit(m, Side.SELL, "4", "100"))
        orders = await asyncio.gather(*(place(sf, buyer.user_id, limit(m, Side.BUY, "1", "100")) for _ in range(20)))
        assert sum(o.status is not OrderStatus.REJECTED for o in orders) == 10  # 4 filled + 6 resting = 1000
        assert {o.reason for o in orders if o.status is OrderStatus.REJECTED} == {"DAILY_NOTIONAL_LIMIT_EXCEEDED"}


async def test_band_and_size_limits_under_concurrent_trading(module_database_url):  # type: ignore[no-untyped-def]
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf, tick="0.1")
        traders = [await make_trader(sf, m, cash="100000", tokens="1000") for _ in range(6)]
        await configure(
            sf,
            m,
            price_band_bps=500,
            reference_price=Decimal("10"),
            max_order_quantity=Decimal("8"),
            max_order_notional=Decimal("75"),
        )

        async def run(n: int) -> None:
            rng = random.Random(n)
            for _ in range(25):
                side = rng.choice([Side.BUY, Side.SELL])
                await place(
                    sf, traders[n].user_id, limit(m, side, rng.randint(1, 9), Decimal(rng.randint(90, 116)) / 10)
                )

        await asyncio.gather(*(run(n) for n in range(len(traders))))
        async with sf() as s:
            orders = (
                (await s.execute(select(Order).where(Order.market_id == m.market_id).order_by(Order.seq)))
                .scalars()
                .all()
            )
            trades = (
                await s.execute(
                    select(Trade.price, Order.seq)
                    .join(Order, Order.id == Trade.taker_order_id)
                    .where(Trade.market_id == m.market_id)
                    .order_by(Trade.seq)
                )
            ).all()
        assert len(trades) > 10, "the flow should trade"
        reasons = {o.reason for o in orders if o.status is OrderStatus.REJECTED}
        assert {"PRICE_OUTSIDE_BAND", "MAX_ORDER_QUANTITY_EXCEEDED", "MAX_ORDER_NOTIONAL_EXCEEDED"} <= reasons
        for o in orders:  # each order against the last trade made before it (seq order = lock order)
            before = [p for p, seq in trades if seq < o.seq]
            ref = before[-1] if before else Decimal("10")
            inside = ref * Decimal("0.95") <= o.price <= ref * Decimal("1.05")
            if o.status is OrderStatus.REJECTED and o.reason == "PRICE_OUTSIDE_BAND":
                assert not inside, o.id
            elif o.status is not OrderStatus.REJECTED:
                assert inside and o.quantity <= 8 and o.quantity * o.price <= 75, o.id


async def test_circuit_breaker_under_a_burst_of_sweeps(module_database_url):  # type: ignore[no-untyped-def]
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf)
        seller = await make_trader(sf, m, tokens="1000")
        buyers = [await make_trader(sf, m, cash="100000") for _ in range(10)]
        await configure(sf, m, breaker_move_bps=1000, breaker_window_s=300, breaker_halt_s=600)
        await place(sf, seller.user_id, limit(m, Side.SELL, "1", "10"))
        await place(sf, buyers[0].user_id, limit(m, Side.BUY, "1", "10"))  # reference 10: fills up to 11 allowed
        asks = [
            await place(sf, seller.user_id, limit(m, Side.SELL, "1", str(Decimal("10.2") + Decimal("0.2") * i)))
            for i in range(10)
        ]  # 10.2 .. 12.0
        orders = await asyncio.gather(*(place(sf, b.user_id, limit(m, Side.BUY, "2", "12")) for b in buyers))
        async with sf() as s:
            prices = (await s.execute(select(Trade.price).where(Trade.market_id == m.market_id))).scalars().all()
            assert max(prices) <= 11 and len(prices) == 1 + 5  # 10.2 .. 11.0 filled, nothing beyond
            assert (await s.get(Market, m.market_id)).status is MarketStatus.HALTED  # type: ignore[union-attr]
            assert (
                await s.scalar(
                    select(func.count())
                    .select_from(AuditLog)
                    .where(AuditLog.action == "market.circuit_breaker", AuditLog.target_id == str(m.market_id))
                )
                == 1
            )
            still = (
                (
                    await s.execute(
                        select(Order.price).where(Order.id.in_([a.id for a in asks]), Order.status == OrderStatus.NEW)
                    )
                )
                .scalars()
                .all()
            )
            assert sorted(still) == [Decimal("11.2") + Decimal("0.2") * i for i in range(5)]  # book intact
            assert (await ledger.total_by_currency(s))[m.quote] == 0
            for b in buyers:
                [cash] = await ledger.balances(s, b.user_id)
                assert cash.reserved == sum((o.reserved_cash for o in orders if o.user_id == b.user_id), Decimal(0))
        reasons = [o.reason for o in orders if o.status in (OrderStatus.REJECTED, OrderStatus.CANCELED)]
        assert reasons.count("CIRCUIT_BREAKER") == 1
        assert set(reasons) <= {"CIRCUIT_BREAKER", "MARKET_NOT_OPEN"}
        assert all(o.status not in OPEN or o.filled_quantity == 0 for o in orders)


async def test_kill_switch_racing_placements(module_database_url):  # type: ignore[no-untyped-def]
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf)
        admin = await make_user(sf, ["ADMIN"])
        traders = [await make_trader(sf, m, cash="100000", tokens="1000") for _ in range(6)]
        killed_at: list[int] = []
        placed = 0
        a_third_placed = asyncio.Event()  # the kill lands mid-stream however fast or loaded the machine is

        async def run(n: int) -> None:
            nonlocal placed
            rng = random.Random(n)
            for _ in range(15):
                side = rng.choice([Side.BUY, Side.SELL])
                await place(
                    sf, traders[n].user_id, limit(m, side, rng.randint(1, 5), Decimal(rng.randint(95, 105)) / 10)
                )
                placed += 1
                if placed == 30:
                    a_third_placed.set()

        async def kill() -> None:
            await a_third_placed.wait()
            async with sf() as s:
                killed_at.append((await risk_admin.kill_market(s, admin, m.market_id, "test", None)).canceled)

        await asyncio.gather(*(run(n) for n in range(len(traders))), kill())
        async with sf() as s:
            orders = (await s.execute(select(Order).where(Order.market_id == m.market_id))).scalars().all()
            assert not [o for o in orders if o.status in OPEN]
            killed = [o for o in orders if o.reason == "KILL_SWITCH"]
            assert len(killed) == killed_at[0] > 0
            refused = [o for o in orders if o.reason == "MARKET_NOT_OPEN"]
            assert refused, "placements after the kill are refused"
            assert min(o.seq for o in refused) > max(o.seq for o in orders if o.reason != "MARKET_NOT_OPEN")
            assert all(o.reserved_cash == 0 for o in orders)
            for t in traders:
                [cash] = await ledger.balances(s, t.user_id)
                assert cash.reserved == 0
            assert (await ledger.total_by_currency(s))[m.quote] == 0
            assert await s.scalar(
                select(func.count())
                .select_from(AuditLog)
                .where(AuditLog.action == "order.canceled", AuditLog.actor_id == admin)
            ) == len(killed)
