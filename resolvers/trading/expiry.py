"""GTD expiry: `expire_due_orders(session, now)` expires every open order whose `expiresAt` has passed (the jobs
worker calls it periodically; matching also expires due orders it walks over, so a late job never lets one fill).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.trading import OPEN_STATUSES, Order, OrderStatus
from resolvers.trading import market_data
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
    for market_id in markets:
        expired, events = await cancel_orders(
            session, None, market_id, None, reason="GTD_EXPIRED", status=OrderStatus.EXPIRED, now=now
        )
        total += len(expired)
        if hub is not None:
            await market_data.publish(hub, events)
    return total
