"""Candle roll-ups (resolvers.trading.candles.roll_up): `roll_up_candles` fans out one message per market and
interval; each stores the closed buckets (idempotent: re-running rewrites the same rows)."""

from __future__ import annotations

import dramatiq
from sqlalchemy import select

from jobs import broker  # noqa: F401  (installs the broker first)
from jobs.context import job_context
from jobs.scheduler import release

try:
    from models.trading import Market
    from resolvers.trading.candles import CandleInterval, roll_up
except ImportError:  # trading not installed in this build: no actors
    roll_up = None  # type: ignore[assignment]  # None marks the optional import as missing


if roll_up is not None:

    @dramatiq.actor(queue_name="trading", max_retries=3, min_backoff=1_000)
    async def roll_up_market_candles(market_id: str, interval: str) -> None:
        import uuid

        ctx = job_context()
        async with ctx.session_factory() as session:
            await roll_up(session, uuid.UUID(market_id), CandleInterval(interval))

    @dramatiq.actor(queue_name="trading", max_retries=3, min_backoff=1_000)
    async def roll_up_candles() -> None:
        ctx = job_context()
        try:
            async with ctx.session_factory() as session:
                markets = (await session.execute(select(Market.id))).scalars().all()
            for market_id in markets:
                for interval in CandleInterval:
                    roll_up_market_candles.send(str(market_id), interval.value)
        finally:
            release("roll_up_candles")
