"""GTD expiry: `expire_due_orders(session, now)` expires every open order whose `expiresAt` has passed (the jobs
worker calls it periodically; matching also expires due orders it walks over, so a late job never lets one fill).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from models.trading import OPEN_STATUSES, Order, OrderStatus
from resolvers.trading import market_data, sequencer
from resolvers.trading.cancel import cancel_orders


async def expire_due_orders(session: AsyncSession, now: datetime, hub: Any | None = None) -> int:
    """Expire due GTD orders market by market (each under its market lock, one commit per market).
    Publishes book and order events through `hub` (a PubSubHub) when given. Returns how many expired."""
    markets = (
        (
            await session.execute(
                select(Order.market_id).distinct().where(Order.status.in_(OPEN_STATUSES), Order.expires_at <= now)
            )
        )
        .scalars()
        .all()
    )
    await session.rollback()
    total = 0
    engine = session.bind if hub is not None and isinstance(session.bind, AsyncEngine) else None
    for market_id in markets:

        async def expire(s: AsyncSession, market_id: Any = market_id) -> tuple[list[Any], market_data.Events]:
            return await cancel_orders(
                s, None, market_id, None, reason="GTD_EXPIRED", status=OrderStatus.EXPIRED, now=now
            )

        if engine is not None:
            # its own session and task: the events of a committed expiry go out even if this job is cancelled
            expired, events = await sequencer.run_detached(engine, hub, expire, lambda done: done[1])
        else:
            expired, events = await expire(session)
        total += len(expired)
        if hub is not None:
            await market_data.publish(hub, events)
    return total
