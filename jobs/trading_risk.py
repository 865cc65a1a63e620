"""Trading risk and liquidity jobs, run periodically by the worker's scheduler (jobs/actors.py): ending due
circuit-breaker halts (resolvers.trading.risk_admin) and sampling the designated market makers' quotes
(resolvers.trading.market_makers). Both are idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

import dramatiq

from jobs import broker  # noqa: F401  (installs the broker first)
from jobs.context import job_context
from jobs.scheduler import release
from resolvers.trading.market_makers import SAMPLE_INTERVAL_S, sample_quotes  # noqa: F401
from resolvers.trading.risk_admin import resume_due_markets


@dramatiq.actor(queue_name="trading", max_retries=3, min_backoff=500)
async def resume_halted_markets() -> None:
    ctx = job_context()
    try:
        async with ctx.session_factory() as session:
            await resume_due_markets(session, datetime.now(UTC))
    finally:
        release("resume_halted_markets")


@dramatiq.actor(queue_name="trading", max_retries=0)
async def sample_market_makers() -> None:
    ctx = job_context()
    try:
        async with ctx.session_factory() as session:
            await sample_quotes(session, datetime.now(UTC))
    finally:
        release("sample_market_makers")
