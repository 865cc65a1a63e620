"""GTD order expiry (resolvers.trading.expiry), run periodically by the worker's scheduler. Idempotent: an
order already expired is not open any more. Its book and order events go to the API's subscribers through Redis,
exactly once, after each market's commit."""

from __future__ import annotations

from datetime import UTC, datetime

import dramatiq

from jobs import broker  # noqa: F401  (installs the broker first)
from jobs.context import job_context
from jobs.scheduler import release

try:
    from resolvers.trading.expiry import expire_due_orders
except ImportError:  # trading not installed in this build: no actor
    expire_due_orders = None  # type: ignore[assignment]  # None marks the optional import as missing


if expire_due_orders is not None:

    @dramatiq.actor(queue_name="trading", max_retries=3, min_backoff=500)
    async def expire_orders() -> None:
        ctx = job_context()
        try:
            async with ctx.session_factory() as session:
                await expire_due_orders(session, datetime.now(UTC), ctx.hub)
        finally:
            release("expire_orders")
