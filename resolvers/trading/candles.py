"""Candles (OHLCV) per market and interval, aggregated from trades with date_bin. `roll_up` stores closed buckets
in the candles table (a job calls it); reads take stored buckets and aggregate the rest from trades."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput
from models.trading import Candle, Trade

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CANDLES = 1000


class CandleInterval(enum.Enum):
    ONE_MINUTE = "ONE_MINUTE"
    FIVE_MINUTES = "FIVE_MINUTES"
    ONE_HOUR = "ONE_HOUR"
    ONE_DAY = "ONE_DAY"


STEP = {
    CandleInterval.ONE_MINUTE: timedelta(minutes=1),
    CandleInterval.FIVE_MINUTES: timedelta(minutes=5),
    CandleInterval.ONE_HOUR: timedelta(hours=1),
    CandleInterval.ONE_DAY: timedelta(days=1),
}


@dataclass(frozen=True)
class CandleRow:
    bucket_start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int


DEFAULT_WINDOW = timedelta(days=1)
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def window(from_: datetime | None, to: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of a candles query: `to` defaults to now, `from` to a day before `to`, but no earlier than the
    first instant a datetime can hold (`to: "0001-01-01T00:00:00Z"` overflowed in `to - 1 day`: INTERNAL)."""
    end = to or now
    start = from_ if from_ is not None else (end - DEFAULT_WINDOW if end - _EARLIEST >= DEFAULT_WINDOW else _EARLIEST)
    if start >= end:
        raise BadUserInput("from must be before to", field="from")
    return start, end


def bucket_of(at: datetime, interval: CandleInterval) -> datetime:
    step = STEP[interval]
    return EPOCH + ((at - EPOCH) // step) * step


async def aggregate(
    session: AsyncSession, market_id: uuid.UUID, interval: CandleInterval, start: datetime, end: datetime
) -> list[CandleRow]:
    bucket = func.date_bin(
        text(f"interval '{int(STEP[interval].total_seconds())} seconds'"), Trade.created_at, EPOCH
    ).label("bucket")
    rows = (
        await session.execute(
            select(
                bucket,
                func.array_agg(aggregate_order_by(Trade.price, Trade.seq)).label("prices"),
                func.max(Trade.price),
                func.min(Trade.price),
                func.sum(Trade.quantity),
                func.count(),
            )
            .where(Trade.market_id == market_id, Trade.created_at >= start, Trade.created_at < end)
            .group_by(bucket)
            .order_by(bucket)
            .limit(MAX_CANDLES)
        )
    ).all()
    return [CandleRow(b, prices[0], hi, lo, prices[-1], vol, n) for b, prices, hi, lo, vol, n in rows]


async def candles(
    session: AsyncSession, market_id: uuid.UUID, interval: CandleInterval, start: datetime, end: datetime
) -> list[CandleRow]:
    stored = [
        CandleRow(c.bucket_start, c.open, c.high, c.low, c.close, c.volume, c.trade_count)
        for c in (
            await session.execute(
                select(Candle)
                .where(
                    Candle.market_id == market_id,
                    Candle.interval == interval.value,
                    Candle.bucket_start >= start,
                    Candle.bucket_start < end,
                )
                .order_by(Candle.bucket_start)
                .limit(MAX_CANDLES)
            )
        ).scalars()
    ]
    rest_from = max(start, stored[-1].bucket_start + STEP[interval]) if stored else start
    return (stored + await aggregate(session, market_id, interval, rest_from, end))[:MAX_CANDLES]


async def roll_up(
    session: AsyncSession, market_id: uuid.UUID, interval: CandleInterval, now: datetime | None = None
) -> int:
    """Store every closed bucket not stored yet (idempotent: re-running rewrites the same rows). Commits."""
    now = now or datetime.now(UTC)
    last = (
        await session.execute(
            select(func.max(Candle.bucket_start)).where(
                Candle.market_id == market_id, Candle.interval == interval.value
            )
        )
    ).scalar_one_or_none()
    start = last + STEP[interval] if last is not None else EPOCH
    rows = await aggregate(session, market_id, interval, start, bucket_of(now, interval))
    for r in rows:
        stmt = insert(Candle).values(
            market_id=market_id,
            interval=interval.value,
            bucket_start=r.bucket_start,
            open=r.open,
            high=r.high,
            low=r.low,
            close=r.close,
            volume=r.volume,
            trade_count=r.trade_count,
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["market_id", "interval", "bucket_start"],
                set_={k: stmt.excluded[k] for k in ("open", "high", "low", "close", "volume", "trade_count")},
            )
        )
    # a job (jobs/candles.py, one message per market): each roll-up is its own transaction
    await session.commit()
    return len(rows)


async def current(
    session: AsyncSession, market_id: uuid.UUID, interval: CandleInterval, now: datetime
) -> CandleRow | None:
    """The candle of the bucket holding `now`; when that bucket has no trade yet, a flat one at the last trade's
    price (volume 0), as exchanges draw an empty interval. None for a market that never traded."""
    start = bucket_of(now, interval)
    rows = await aggregate(session, market_id, interval, start, start + STEP[interval])
    if rows:
        return rows[0]
    last = (
        await session.execute(
            select(Trade.price).where(Trade.market_id == market_id).order_by(Trade.seq.desc()).limit(1)
        )
    ).scalar_one_or_none()
    return None if last is None else CandleRow(start, last, last, last, last, Decimal(0), 0)
