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
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.trading import OPEN_STATUSES, MarketStatus, Order, Side
from resolvers.raw_sql import pg
from resolvers.trading.matching import BookOrder, Incoming, MatchResult, match

FIRST_BATCH = 64


def lock_key(market_id: uuid.UUID) -> int:
    return int.from_bytes(market_id.bytes[:8], "big", signed=True)


async def lock_market(session: AsyncSession, market_id: uuid.UUID) -> None:
    await (await pg(session)).execute("SELECT pg_advisory_xact_lock($1)", lock_key(market_id))


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """What placing an order reads of a market and its base token (attribute names as on models Market/Token)."""

    id: uuid.UUID
    status: MarketStatus
    base_token_id: uuid.UUID
    chain_id: int
    token_address: str
    base_decimals: int
    quote_currency: str
    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal
    maker_fee_bps: int
    taker_fee_bps: int
    paused: bool  # the token's
    identity_registry: str | None  # the token's


_SEQUENCE_AND_LEVELS = """
WITH s AS (UPDATE markets SET book_sequence = book_sequence + 1 WHERE id = $1 RETURNING book_sequence)
SELECT s.book_sequence, l.side, l.price, l.qty FROM s LEFT JOIN (
    SELECT o.side, o.price, sum(o.quantity - o.filled_quantity) AS qty FROM orders o
    WHERE o.market_id = $1 AND o.status IN ('NEW', 'PARTIALLY_FILLED')
      AND (o.side, o.price) IN (SELECT * FROM unnest($2::order_side[], $3::numeric[]))
    GROUP BY o.side, o.price) l ON true"""


async def sequence_and_levels(
    session: AsyncSession, market_id: uuid.UUID, levels: set[tuple[Side, Decimal]]
) -> tuple[int, list[tuple[Side, Decimal, Decimal]]]:
    """Bump the market's book sequence and read the open quantity at each changed (side, price) after the change
    (0 where a level emptied), in one round trip (the level read sees this transaction's earlier statements)."""
    ordered = sorted(levels, key=lambda x: (x[0].value, x[1]))
    rows = await (await pg(session)).fetch(
        _SEQUENCE_AND_LEVELS, market_id, [s.value for s, _ in ordered], [p for _, p in ordered]
    )
    found = {(r[1], r[2]): r[3] for r in rows if r[1] is not None}
    return rows[0][0], [(s, p, found.get((s.value, p), Decimal(0))) for s, p in ordered]


@dataclass(slots=True)
class Resting:
    """A resting order's columns that settlement needs besides the matching view."""

    user_id: uuid.UUID
    price: Decimal
    wallet: str | None
    reserved_cash: Decimal
    quantity: Decimal
    filled: Decimal
    barred: str | None = None  # why it may not trade any more (BARRED_SQL; BookOrder.barred), None if it may


# a resting order's columns, in the order `_resting` unpacks them (also read by the gate's prefetch, gate.py)
RESTING_COLUMNS = (
    "id",
    "user_id",
    "price",
    "quantity",
    "filled_quantity",
    "seq",
    "expires_at",
    "wallet_address",
    "reserved_cash",
)
# why a resting order (alias {o}) may not trade any more, NULL if it may: KYC_NOT_APPROVED, its owner has no KYC case
# APPROVED and not lapsed (the gate's KYC_NOT_APPROVED for a taker); WALLET_FROZEN, its wallet is frozen on the
# market's token (holdings.frozen, as indexed; the gate's WALLET_FROZEN). Matching takes such a maker off the book,
# CANCELED with that reason, rather than trade with it (the trade would fail at settlement: the owner's identity left
# the registry, or the token refuses the wallet's transfers); a KYC change and a confirmed freeze cancel them
# themselves (resolvers/identity/kyc.py, agent/effects/compliance.py), this covers an approval that lapsed before
# the sweep wrote EXPIRED and a freeze indexed before the agent confirmed it. One unique-index lookup per maker row
# read, plus two primary-key lookups (market, holding) when the owner's KYC holds, in the same statement.
BARRED_SQL = (
    "CASE WHEN NOT EXISTS (SELECT 1 FROM kyc_cases kc WHERE kc.user_id = {o}.user_id AND kc.status = 'APPROVED'"
    " AND (kc.expires_at IS NULL OR kc.expires_at > now())) THEN 'KYC_NOT_APPROVED'"
    " WHEN EXISTS (SELECT 1 FROM markets bm JOIN holdings bh ON bh.chain_id = bm.chain_id"
    " AND bh.token_address = bm.token_address WHERE bm.id = {o}.market_id AND bh.holder = {o}.wallet_address"
    " AND bh.frozen) THEN 'WALLET_FROZEN' END AS barred"
)
_RESTING = f"""
SELECT {", ".join(RESTING_COLUMNS)}, {BARRED_SQL.format(o="orders")} FROM orders
WHERE market_id = $1 AND side = $2 AND status IN ('NEW', 'PARTIALLY_FILLED'){{cross}}
ORDER BY price {{direction}}, seq ASC LIMIT $3"""
# (side, has a limit price) -> SQL; separate texts so each keeps its own plan on the book index
_RESTING_SQL = {
    (Side.SELL, False): _RESTING.format(cross="", direction="ASC"),
    (Side.SELL, True): _RESTING.format(cross=" AND price <= $4", direction="ASC"),
    (Side.BUY, False): _RESTING.format(cross="", direction="DESC"),
    (Side.BUY, True): _RESTING.format(cross=" AND price >= $4", direction="DESC"),
}


async def resting_orders(
    session: AsyncSession, market_id: uuid.UUID, side: Side, limit_price: Decimal | None, limit: int
) -> tuple[list[BookOrder[uuid.UUID]], dict[uuid.UUID, Resting]]:
    """Open orders on `side` that cross `limit_price`, best first (price, then arrival)."""
    args: tuple[object, ...] = (market_id, side.value, limit) + ((limit_price,) if limit_price is not None else ())
    rows = await (await pg(session)).fetch(_RESTING_SQL[(side, limit_price is not None)], *args)
    return _resting(side, rows)


def _resting(side: Side, rows: Any) -> tuple[list[BookOrder[uuid.UUID]], dict[uuid.UUID, Resting]]:
    """The matching engine's view of resting orders (values in RESTING_COLUMNS order, then `barred`) and what
    settling needs."""
    book: list[BookOrder[uuid.UUID]] = []
    extra: dict[uuid.UUID, Resting] = {}
    for oid, user, price, qty, filled, seq, expires, wallet, reserved, barred in rows:
        book.append(BookOrder(oid, user, side, price, qty - filled, seq, expires, barred is not None))
        extra[oid] = Resting(user, price, wallet, reserved, qty, filled, barred)
    return book, extra


@dataclass(slots=True)
class Prefetched:
    """The first FIRST_BATCH resting orders of `side` crossing `price` (None: any), best first, read with the gate
    (resolvers/trading/gate.py) in the same transaction under the market lock."""

    side: Side
    price: Decimal | None
    book: list[BookOrder[uuid.UUID]]
    extra: dict[uuid.UUID, Resting]

    @classmethod
    def of(cls, side: Side, price: Decimal | None, r: Any) -> Prefetched:
        if r["bk_id"] is None:
            return cls(side, price, [], {})
        book, extra = _resting(side, zip(*(r["bk_" + c] for c in (*RESTING_COLUMNS, "barred"))))
        return cls(side, price, book, extra)

    def covers(self, side: Side, price: Decimal | None) -> bool:
        """Whether this is a superset, in the same priority order, of what `resting_orders(side, price)` returns
        first: the same side, read with a bound at least as loose (matching stops at the first non-crossing price,
        so extra rows past it change nothing)."""
        if side is not self.side:
            return False
        if self.price is None:  # read without a bound
            return True
        if price is None:
            return False
        # bids read at >= self.price cover bids >= price when price >= self.price; asks likewise downwards
        return price >= self.price if side is Side.BUY else price <= self.price


async def match_against_book(
    session: AsyncSession,
    market_id: uuid.UUID,
    taker: Incoming[uuid.UUID],
    now,
    prefetched: Prefetched | None = None,
) -> tuple[MatchResult[uuid.UUID], dict[uuid.UUID, Resting]]:
    """Fetch as much of the opposite side as the taker can use (growing the batch when it runs out) and match;
    the first batch may come `prefetched` with the gate's read."""
    opposite = Side.SELL if taker.side is Side.BUY else Side.BUY
    limit = FIRST_BATCH
    first = prefetched if prefetched is not None and prefetched.covers(opposite, taker.price) else None
    while True:
        if first is not None:
            book, extra, first = first.book, first.extra, None
        else:
            book, extra = await resting_orders(session, market_id, opposite, taker.price, limit)
        result = match(taker, book, now)
        exhausted = len(book) < limit
        done = result.remaining == 0 or result.reason == "SELF_TRADE_PREVENTED"
        if exhausted or done:
            return result, extra
        limit *= 4


async def depth(session: AsyncSession, market_id: uuid.UUID, side: Side, n: int) -> list[tuple[Decimal, Decimal]]:
    price_order = Order.price.desc() if side is Side.BUY else Order.price.asc()
    rows = (
        await session.execute(
            select(Order.price, func.sum(Order.quantity - Order.filled_quantity))
            .where(Order.market_id == market_id, Order.side == side, Order.status.in_(OPEN_STATUSES))
            .group_by(Order.price)
            .order_by(price_order)
            .limit(n)
        )
    ).all()
    return [(p, Decimal(q)) for p, q in rows if p is not None]  # MARKET orders (no price) never rest
