"""Designated market makers: ADMIN marks an account as a market maker of a market with its own fee tier and quoting
obligations; a worker job samples their quotes; ADMIN reads the measured performance.

Fee tier: the maker's and taker's fee in bps applied to that account's fills in that market instead of the
market's (placeOrder reads the tiers with the gate, under the market lock). A negative maker fee is a rebate:
the trade's cash movement pays it from the platform FEES account, so it still balances to zero. Tiers may not
exceed the market's highest fee, which is what a buy's cash reservation is computed with.

Obligations: at each sample (every SAMPLE_INTERVAL_S while the market is OPEN) the maker's best own bid and ask
are read from the book; a sample is compliant when both sides are quoted, each with at least `min_quote_size` at
the best price, and the spread (ask - bid) / mid is at most `max_spread_bps`. Uptime = compliant samples / samples
in a period; the obligation is met when it reaches `min_uptime`. A halted market is not sampled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, NotFound
from models.identity import User
from models.trading import Market, MarketMaker
from resolvers import unit_of_work
from resolvers.audit import record
from resolvers.raw_sql import pg
from resolvers.trading.markets import MAX_FEE_BPS, MONEY_LIMIT, check_money_scale

SAMPLE_INTERVAL_S = 10.0
MAX_REPORT_DAYS = 366


@dataclass(frozen=True)
class MakerSpec:
    maker_fee_bps: int
    taker_fee_bps: int
    max_spread_bps: int
    min_quote_size: Decimal
    min_uptime: Decimal


def validate(spec: MakerSpec, market: Market) -> None:
    ceiling = max(market.maker_fee_bps, market.taker_fee_bps)
    if not -MAX_FEE_BPS <= spec.maker_fee_bps <= ceiling:
        raise BadUserInput(
            f"makerFeeBps must be between -{MAX_FEE_BPS} (a rebate) and the market's highest fee {ceiling}",
            field="makerFeeBps",
        )
    if not 0 <= spec.taker_fee_bps <= ceiling:
        raise BadUserInput(f"takerFeeBps must be between 0 and the market's highest fee {ceiling}", field="takerFeeBps")
    if not 1 <= spec.max_spread_bps <= 10000:
        raise BadUserInput("maxSpreadBps must be between 1 and 10000", field="maxSpreadBps")
    if not spec.min_quote_size.is_finite() or not 0 < spec.min_quote_size < MONEY_LIMIT:
        raise BadUserInput("minQuoteSize must be positive and below 1E+20", field="minQuoteSize")
    check_money_scale("minQuoteSize", spec.min_quote_size)
    if not spec.min_uptime.is_finite() or not 0 <= spec.min_uptime <= 1 or spec.min_uptime != round(spec.min_uptime, 4):
        raise BadUserInput("minUptime is a fraction between 0 and 1 with at most 4 decimals", field="minUptime")


async def set_market_maker(
    session: AsyncSession,
    actor_id: uuid.UUID,
    market_id: uuid.UUID,
    user_id: uuid.UUID,
    spec: MakerSpec,
    request_id: str | None,
) -> MarketMaker:
    market = await session.get(Market, market_id)
    if market is None:
        raise NotFound("market not found", field="marketId")
    if await session.get(User, user_id) is None:
        raise NotFound("user not found", field="userId")
    validate(spec, market)
    now = datetime.now(UTC)
    values = {
        "maker_fee_bps": spec.maker_fee_bps,
        "taker_fee_bps": spec.taker_fee_bps,
        "max_spread_bps": spec.max_spread_bps,
        "min_quote_size": spec.min_quote_size,
        "min_uptime": spec.min_uptime,
        "active": True,
        "updated_by": actor_id,
        "updated_at": now,
    }
    await session.execute(
        insert(MarketMaker)
        .values(market_id=market_id, user_id=user_id, **values)
        .on_conflict_do_update(index_elements=[MarketMaker.market_id, MarketMaker.user_id], set_=values)
    )
    record(
        session,
        actor_id=actor_id,
        action="market.maker_set",
        target_type="market",
        target_id=market_id,
        request_id=request_id,
        details={
            "user": str(user_id),
            "makerFeeBps": spec.maker_fee_bps,
            "takerFeeBps": spec.taker_fee_bps,
            "maxSpreadBps": spec.max_spread_bps,
            "minQuoteSize": str(spec.min_quote_size),
            "minUptime": str(spec.min_uptime),
        },
    )
    await unit_of_work.commit(session)
    return await _get(session, market_id, user_id)


async def remove_market_maker(
    session: AsyncSession, actor_id: uuid.UUID, market_id: uuid.UUID, user_id: uuid.UUID, request_id: str | None
) -> MarketMaker:
    """The account trades at the market's fees again and is no longer sampled; its history stays."""
    maker = await session.get(MarketMaker, (market_id, user_id), with_for_update=True)
    if maker is None:
        raise NotFound("not a market maker of this market", field="userId")
    maker.active = False
    maker.updated_by = actor_id
    record(
        session,
        actor_id=actor_id,
        action="market.maker_removed",
        target_type="market",
        target_id=market_id,
        request_id=request_id,
        details={"user": str(user_id)},
    )
    await unit_of_work.commit(session)
    return await _get(session, market_id, user_id)


async def _get(session: AsyncSession, market_id: uuid.UUID, user_id: uuid.UUID) -> MarketMaker:
    return (
        await session.execute(
            select(MarketMaker)
            .where(MarketMaker.market_id == market_id, MarketMaker.user_id == user_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


# every active maker of every OPEN market: its best own bid and ask (size at that price), the spread and whether the
# sample meets its obligations; one statement
_SAMPLE = """
WITH q AS (
    SELECT mm.market_id, mm.user_id, mm.max_spread_bps, mm.min_quote_size, b.price AS bid,
           coalesce(b.qty, 0) AS bid_size, a.price AS ask, coalesce(a.qty, 0) AS ask_size
    FROM market_makers mm
    JOIN markets m ON m.id = mm.market_id AND m.status = 'OPEN'
    LEFT JOIN LATERAL (SELECT o.price, sum(o.quantity - o.filled_quantity) AS qty FROM orders o
                       WHERE o.user_id = mm.user_id AND o.market_id = mm.market_id AND o.side = 'BUY'
                         AND o.status IN ('NEW', 'PARTIALLY_FILLED') AND (o.expires_at IS NULL OR o.expires_at > $1)
                       GROUP BY o.price ORDER BY o.price DESC LIMIT 1) b ON true
    LEFT JOIN LATERAL (SELECT o.price, sum(o.quantity - o.filled_quantity) AS qty FROM orders o
                       WHERE o.user_id = mm.user_id AND o.market_id = mm.market_id AND o.side = 'SELL'
                         AND o.status IN ('NEW', 'PARTIALLY_FILLED') AND (o.expires_at IS NULL OR o.expires_at > $1)
                       GROUP BY o.price ORDER BY o.price ASC LIMIT 1) a ON true
    WHERE mm.active),
s AS (SELECT q.*, CASE WHEN q.bid IS NOT NULL AND q.ask IS NOT NULL
                       THEN round((q.ask - q.bid) / ((q.ask + q.bid) / 2) * 10000, 4) END AS spread FROM q)
INSERT INTO market_maker_samples (market_id, user_id, sampled_at, bid, ask, bid_size, ask_size, spread_bps,
                                  compliant)
SELECT market_id, user_id, $1, bid, ask, bid_size, ask_size, spread,
       coalesce(spread <= max_spread_bps AND bid_size >= min_quote_size AND ask_size >= min_quote_size, false)
FROM s
ON CONFLICT DO NOTHING"""


async def sample_quotes(session: AsyncSession, now: datetime) -> int:
    """Record one sample per active maker of every OPEN market; returns how many."""
    status = await (await pg(session)).execute(_SAMPLE, now)
    # a job (jobs/trading_risk.py): each sample is its own transaction
    await session.commit()
    return int(status.split()[-1])


@dataclass
class Performance:
    user_id: uuid.UUID
    email: str
    active: bool
    maker_fee_bps: int
    taker_fee_bps: int
    max_spread_bps: int
    min_quote_size: Decimal
    min_uptime: Decimal
    samples: int
    compliant_samples: int
    uptime: Decimal | None
    meets_obligations: bool
    average_spread_bps: Decimal | None
    two_sided_samples: int
    maker_volume: Decimal  # notional of the trades where the account was the maker
    taker_volume: Decimal
    maker_fees: Decimal  # negative: rebates paid to the account
    taker_fees: Decimal


_REPORT = """
SELECT mm.user_id, u.email, mm.active, mm.maker_fee_bps, mm.taker_fee_bps, mm.max_spread_bps, mm.min_quote_size,
       mm.min_uptime, count(s.sampled_at) AS samples, count(s.sampled_at) FILTER (WHERE s.compliant) AS compliant,
       avg(s.spread_bps) AS avg_spread, count(s.spread_bps) AS two_sided
FROM market_makers mm
JOIN users u ON u.id = mm.user_id
LEFT JOIN market_maker_samples s ON s.market_id = mm.market_id AND s.user_id = mm.user_id
                                AND s.sampled_at >= $2 AND s.sampled_at < $3
WHERE mm.market_id = $1
GROUP BY mm.user_id, u.email, mm.active, mm.maker_fee_bps, mm.taker_fee_bps, mm.max_spread_bps, mm.min_quote_size,
         mm.min_uptime
ORDER BY u.email"""
# per account: (maker volume, maker fees, taker volume, taker fees) in the period
_VOLUMES = """
SELECT x.user_id, sum(x.notional) FILTER (WHERE x.maker) AS maker_volume, sum(x.fee) FILTER (WHERE x.maker) AS maker_fees,
       sum(x.notional) FILTER (WHERE NOT x.maker) AS taker_volume, sum(x.fee) FILTER (WHERE NOT x.maker) AS taker_fees
FROM (SELECT CASE WHEN t.taker_side = 'BUY' THEN t.seller_id ELSE t.buyer_id END AS user_id, true AS maker,
             t.price * t.quantity AS notional, t.maker_fee AS fee
      FROM trades t WHERE t.market_id = $1 AND t.created_at >= $2 AND t.created_at < $3
      UNION ALL
      SELECT CASE WHEN t.taker_side = 'BUY' THEN t.buyer_id ELSE t.seller_id END, false, t.price * t.quantity,
             t.taker_fee
      FROM trades t WHERE t.market_id = $1 AND t.created_at >= $2 AND t.created_at < $3) x
WHERE x.user_id = ANY($4::uuid[])
GROUP BY x.user_id"""


def report_window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    end = end or now
    if start is None:
        try:
            start = end - timedelta(days=1)
        except OverflowError:  # `to` in datetime's first day ("0001-01-01T00:00:00Z") came back INTERNAL
            raise BadUserInput("to is too early: no day before it to report on", field="to") from None
    if start >= end:
        raise BadUserInput("from must be before to", field="from")
    if end - start > timedelta(days=MAX_REPORT_DAYS):
        raise BadUserInput(f"the period may span at most {MAX_REPORT_DAYS} days", field="from")
    return start, end


async def report(session: AsyncSession, market_id: uuid.UUID, start: datetime, end: datetime) -> list[Performance]:
    if await session.get(Market, market_id) is None:
        raise NotFound("market not found", field="marketId")
    conn = await pg(session)
    rows = await conn.fetch(_REPORT, market_id, start, end)
    volumes = {r["user_id"]: r for r in await conn.fetch(_VOLUMES, market_id, start, end, [r["user_id"] for r in rows])}
    zero = Decimal(0)
    out = []
    for r in rows:
        uptime = (Decimal(r["compliant"]) / Decimal(r["samples"])).quantize(Decimal("1e-4")) if r["samples"] else None
        v = volumes.get(r["user_id"])
        out.append(
            Performance(
                r["user_id"],
                r["email"],
                r["active"],
                r["maker_fee_bps"],
                r["taker_fee_bps"],
                r["max_spread_bps"],
                r["min_quote_size"],
                r["min_uptime"],
                r["samples"],
                r["compliant"],
                uptime,
                uptime is not None and uptime >= r["min_uptime"],
                None if r["avg_spread"] is None else Decimal(r["avg_spread"]).quantize(Decimal("1e-4")),
                r["two_sided"],
                (v and v["maker_volume"]) or zero,
                (v and v["taker_volume"]) or zero,
                (v and v["maker_fees"]) or zero,
                (v and v["taker_fees"]) or zero,
            )
        )
    return out
