"""placeOrder paths the flow tests do not reach, and the round-trip budget of the hot path (raw asyncpg under the
market lock: a regression to per-row reads or re-reads shows up here as extra statements)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, text

from models.identity import AuditLog
from models.ledger import LedgerAccount
from models.trading import Order, OrderStatus, OrderType, Side, TimeInForce, Trade
from resolvers import ledger
from resolvers.ledger import Platform, UserAccount
from resolvers.raw_sql import pg
from resolvers.trading import market_data
from resolvers.trading.orders import OrderRequest, place_order
from tests.trading.factories import make_market, make_trader


def limit(m, side, qty, price, **kw):  # type: ignore[no-untyped-def]
    return OrderRequest(m.market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price), **kw)


async def test_expired_maker_met_while_matching_is_expired_and_releases_its_cash(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=0, taker_bps=0)
    buyer = await make_trader(session_factory, m, cash="100")
    seller = await make_trader(session_factory, m, tokens="10")
    t0 = datetime.now(UTC)
    bid = await place_order(
        session,
        buyer.user_id,
        limit(m, Side.BUY, "5", "2.00", time_in_force=TimeInForce.GTD, expires_at=t0 + timedelta(seconds=10)),
        now=t0,
    )
    assert bid.order.status is OrderStatus.NEW and bid.order.reserved_cash == Decimal("10")
    # the expiry job has not run yet: the sell meets the expired bid, expires it instead of trading, and rests
    ask = await place_order(session, seller.user_id, limit(m, Side.SELL, "5", "2.00"), now=t0 + timedelta(seconds=20))
    assert ask.order.status is OrderStatus.NEW and ask.order.filled_quantity == 0
    assert (
        await session.execute(select(func.count()).select_from(Trade).where(Trade.market_id == m.market_id))
    ).scalar_one() == 0
    status, reason, reserved = (
        await session.execute(select(Order.status, Order.reason, Order.reserved_cash).where(Order.id == bid.order.id))
    ).one()
    assert (status, reason, reserved) == (OrderStatus.EXPIRED, "GTD_EXPIRED", 0)
    (cash,) = await ledger.balances(session, buyer.user_id)
    assert (cash.available, cash.reserved) == (Decimal("100"), 0)
    # what subscribers hear: the book (bid level gone, ask level new), then both orders as stored
    channels = [c for c, _ in ask.events.messages]
    assert channels == [
        market_data.book_channel(m.market_id),
        market_data.orders_channel(seller.user_id),
        market_data.orders_channel(buyer.user_id),
    ]
    book = ask.events.messages[0][1]
    assert book["bids"] == [[Decimal("2.00"), 0]] and book["asks"] == [[Decimal("2.00"), Decimal(5)]]
    assert ask.events.messages[2][1]["status"] is OrderStatus.EXPIRED
    audited = (
        await session.execute(
            select(AuditLog.details).where(AuditLog.action == "order.place", AuditLog.target_id == str(ask.order.id))
        )
    ).scalar_one()
    assert audited == {"market": str(m.market_id), "status": "NEW", "reason": None}


async def test_rejected_order_is_stored_and_audited(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    buyer = await make_trader(session_factory, m, cash="1")
    placed = await place_order(session, buyer.user_id, limit(m, Side.BUY, "5", "2.00"))
    assert placed.order.status is OrderStatus.REJECTED and placed.order.reason == "INSUFFICIENT_CASH"
    assert placed.order.wallet_address == buyer.wallet
    assert [c for c, _ in placed.events.messages] == [market_data.orders_channel(buyer.user_id)]
    audited = (
        await session.execute(
            select(AuditLog.details).where(AuditLog.action == "order.place", AuditLog.target_id == str(placed.order.id))
        )
    ).scalar_one()
    assert audited["status"] == "REJECTED" and audited["reason"] == "INSUFFICIENT_CASH"


async def test_replayed_reference_creates_no_accounts(session, make_user):  # type: ignore[no-untyped-def]
    user = await make_user()
    ref = f"test:{uuid.uuid4()}"
    assert await ledger.credit_deposit(session, user.id, Decimal("3"), "USD", ref)
    # same reference, another currency whose accounts do not exist yet: a replay, nothing is created
    assert not await ledger.post(
        session,
        kind="CREDIT",
        reference=ref,
        currency="EURX",
        legs=[(Platform(ledger.AccountKind.DEPOSITS), Decimal(-3)), (UserAccount(user.id), Decimal(3))],
    )
    assert (
        await session.execute(select(func.count()).select_from(LedgerAccount).where(LedgerAccount.currency == "EURX"))
    ).scalar_one() == 0


async def test_round_trips_per_placement(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=10, taker_bps=20)
    seller = await make_trader(session_factory, m, tokens="100")
    buyer = await make_trader(session_factory, m, cash="10000")
    for _ in range(2):  # warm: plans, accounts
        await place_order(session, seller.user_id, limit(m, Side.SELL, "1", "5.00"))
        await place_order(session, buyer.user_id, limit(m, Side.BUY, "1", "5.00"))
    conn = await pg(session)
    queries: list[str] = []

    def log(record) -> None:  # type: ignore[no-untyped-def]
        queries.append(record.query)

    conn.add_query_logger(log)
    try:
        await place_order(session, seller.user_id, limit(m, Side.SELL, "1", "5.00"))
        resting = len(queries)
        queries.clear()
        await place_order(session, buyer.user_id, limit(m, Side.BUY, "1", "5.00"))
        crossing = len(queries)
    finally:
        conn.remove_query_logger(log)
    # resting sell: lock, read (market, idempotency, gate, the crossing part of the book), the order with its
    # audit row, sequence and levels (BEGIN/COMMIT and the test's savepoints go through SQLAlchemy and are not counted)
    assert resting == 3, queries
    # crossing buy: lock, read, the accounts' creation if missing (a session on an engine skips it once it saw them
    # committed; this one is inside the test's outer transaction), the order with its trade, instruction and cash
    # movement, the makers' update with the audit row, sequence and levels
    assert crossing == 5, queries


async def test_raw_statements_run_in_the_session_transaction(engine):  # type: ignore[no-untyped-def]
    """pg() begins the session's transaction itself: an xact advisory lock taken as the first statement is held
    until commit (were the statement autocommitted, the lock would be released at once)."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    key = uuid.uuid4().int % 2**62
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as holder, engine.connect() as other:
        await (await pg(holder)).execute("SELECT pg_advisory_xact_lock($1)", key)
        probe = "SELECT pg_try_advisory_xact_lock(:k)"
        assert (await other.execute(text(probe), {"k": key})).scalar_one() is False
        await other.rollback()
        await holder.commit()
        assert (await other.execute(text(probe), {"k": key})).scalar_one() is True
        await other.rollback()


async def test_a_sweep_deeper_than_the_prefetched_book_reads_on(session_factory, session):  # type: ignore[no-untyped-def]
    """The gate's read brings the first book.FIRST_BATCH crossing orders; a taker that needs more reads on (and a
    MARKET sell without a floor, read without a bound, still matches best first)."""
    from resolvers.trading.book import FIRST_BATCH

    m = await make_market(session_factory, maker_bps=0, taker_bps=0)
    seller = await make_trader(session_factory, m, tokens="1000")
    buyer = await make_trader(session_factory, m, cash="100000")
    n = FIRST_BATCH + 6
    for i in range(n):  # the worst price first in time, so priority is by price, then arrival
        await place_order(
            session, seller.user_id, limit(m, Side.SELL, "1", str(Decimal("5.00") + Decimal(n - i) / 100))
        )
    placed = await place_order(session, buyer.user_id, limit(m, Side.BUY, str(n), "100.00"))
    assert placed.order.status is OrderStatus.FILLED and placed.order.filled_quantity == n
    prices = [
        p
        for (p,) in await session.execute(
            select(Trade.price).where(Trade.taker_order_id == placed.order.id).order_by(Trade.seq)
        )
    ]
    assert prices == sorted(prices) and len(prices) == n
    for price in ("4.00", "3.00"):
        await place_order(session, buyer.user_id, limit(m, Side.BUY, "1", price))
    sold = await place_order(
        session, seller.user_id, OrderRequest(m.market_id, Side.SELL, OrderType.MARKET, Decimal(2), None)
    )
    assert sold.order.status is OrderStatus.FILLED
    prices = [p for (p,) in await session.execute(select(Trade.price).where(Trade.taker_order_id == sold.order.id))]
    assert sorted(prices) == [Decimal("3.00"), Decimal("4.00")]
