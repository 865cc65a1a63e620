"""The order book in Postgres: the per-market matching lock, resting orders in priority, level totals and the
per-market book sequence. Matching itself is resolvers/trading/matching.py (pure); this module feeds it and
writes back what it decided.

Concurrency: every change to a market's book (place, cancel, expire) first takes
`pg_advisory_xact_lock(<market key>)` in its transaction and holds it until commit, so on any number of API
processes one transaction at a time reads and changes a book: no overfill, no fill of a canceled order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.trading import OPEN_STATUSES, Market, Order, Side
from resolvers.trading.matching import BookOrder, Incoming, MatchResult, match

FIRST_BATCH = 64


def lock_key(market_id: uuid.UUID) -> int:
    return int.from_bytes(market_id.bytes[:8], "big", signed=True)


async def lock_market(session: AsyncSession, market_id: uuid.UUID) -> None:
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(market_id)})


async def next_sequence(session: AsyncSession, market_id: uuid.UUID) -> int:
    return (await session.execute(update(Market).where(Market.id == market_id)
                                  .values(book_sequence=Market.book_sequence + 1)
                                  .returning(Market.book_sequence))).scalar_one()


@dataclass(slots=True)
class Resting:
    """A resting order's columns that settlement needs besides the matching view."""

    user_id: uuid.UUID
    price: Decimal
    wallet: str | None
    reserved_cash: Decimal
    quantity: Decimal
    filled: Decimal


async def resting_orders(session: AsyncSession, market_id: uuid.UUID, side: Side, limit_price: Decimal | None,
                         limit: int) -> tuple[list[BookOrder], dict[uuid.UUID, Resting]]:
    """Open orders on `side` that cross `limit_price`, best first (price, then arrival)."""
    stmt = (select(Order.id, Order.user_id, Order.price, Order.quantity, Order.filled_quantity, Order.seq,
                   Order.expires_at, Order.wallet_address, Order.reserved_cash)
            .where(Order.market_id == market_id, Order.side == side, Order.status.in_(OPEN_STATUSES)))
    if side is Side.SELL:
        stmt = stmt.order_by(Order.price.asc(), Order.seq.asc())
        if limit_price is not None:
            stmt = stmt.where(Order.price <= limit_price)
    else:
        stmt = stmt.order_by(Order.price.desc(), Order.seq.asc())
        if limit_price is not None:
            stmt = stmt.where(Order.price >= limit_price)
    rows = (await session.execute(stmt.limit(limit))).all()
    book = [BookOrder(r.id, r.user_id, side, r.price, r.quantity - r.filled_quantity, r.seq, r.expires_at)
            for r in rows]
    extra = {r.id: Resting(r.user_id, r.price, r.wallet_address, r.reserved_cash, r.quantity, r.filled_quantity) for r in rows}
    return book, extra


async def match_against_book(session: AsyncSession, market_id: uuid.UUID, taker: Incoming, now) -> tuple[  # type: ignore[no-untyped-def]
        MatchResult, dict[uuid.UUID, Resting]]:
    """Fetch as much of the opposite side as the taker can use (growing the batch when it runs out) and match."""
    opposite = Side.SELL if taker.side is Side.BUY else Side.BUY
    limit = FIRST_BATCH
    while True:
        book, extra = await resting_orders(session, market_id, opposite, taker.price, limit)
        result = match(taker, book, now)
        exhausted = len(book) < limit
        done = result.remaining == 0 or result.reason == "SELF_TRADE_PREVENTED"
        if exhausted or done:
            return result, extra
        limit *= 4


async def level_totals(session: AsyncSession, market_id: uuid.UUID,
                       levels: set[tuple[Side, Decimal]]) -> list[tuple[Side, Decimal, Decimal]]:
    """Open quantity at each (side, price) after the change; 0 where a level emptied."""
    if not levels:
        return []
    rows = (await session.execute(
        select(Order.side, Order.price, func.sum(Order.quantity - Order.filled_quantity))
        .where(Order.market_id == market_id, Order.status.in_(OPEN_STATUSES),
               tuple_(Order.side, Order.price).in_([(s, p) for s, p in levels]))
        .group_by(Order.side, Order.price))).all()
    found = {(s, Decimal(p)): Decimal(q) for s, p, q in rows}
    return [(s, p, found.get((s, p), Decimal(0))) for s, p in sorted(levels, key=lambda x: (x[0].value, x[1]))]


async def depth(session: AsyncSession, market_id: uuid.UUID, side: Side, n: int) -> list[tuple[Decimal, Decimal]]:
    price_order = Order.price.desc() if side is Side.BUY else Order.price.asc()
    rows = (await session.execute(
        select(Order.price, func.sum(Order.quantity - Order.filled_quantity))
        .where(Order.market_id == market_id, Order.side == side, Order.status.in_(OPEN_STATUSES))
        .group_by(Order.price).order_by(price_order).limit(n))).all()
    return [(Decimal(p), Decimal(q)) for p, q in rows]
