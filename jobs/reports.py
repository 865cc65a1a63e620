"""Report jobs. Dashboard KPIs (resolvers.reports.kpis): the worker recomputes the snapshot every kpis.REFRESH_S
seconds and stores it in Redis, so a dashboard poll costs one GET (idempotent: a rerun overwrites it with fresher
numbers). Cap table checkpoints (resolvers.reports.checkpoints) every CHECKPOINT_INTERVAL_S."""

from __future__ import annotations

import logging

import dramatiq

from core.redis import Keys
from jobs import broker  # noqa: F401  (installs the broker first)
from jobs.context import job_context
from jobs.scheduler import release
from resolvers.reports.checkpoints import write_checkpoints
from resolvers.reports.kpis import refresh_kpis

log = logging.getLogger("rwa.jobs.reports")


@dramatiq.actor(queue_name="reports", max_retries=1, min_backoff=1_000)
async def refresh_platform_kpis() -> None:
    ctx = job_context()
    try:
        if ctx.redis is None:
            log.warning("no Redis configured: the KPI snapshot is computed by the polls themselves")
            return
        async with ctx.session_factory() as session:
            snap = await refresh_kpis(session, ctx.redis, Keys(ctx.prefix))
        log.debug("KPI snapshot refreshed in %.1f ms", snap.compute_ms)
    finally:
        release("refresh_platform_kpis")


@dramatiq.actor(queue_name="reports", max_retries=3, min_backoff=1_000)
async def checkpoint_cap_tables() -> None:
    """Cap table checkpoints (resolvers.reports.checkpoints): idempotent, each checkpoint committed on its own."""
    ctx = job_context()
    try:
        async with ctx.session_factory() as session:
            await write_checkpoints(session)
    finally:
        release("checkpoint_cap_tables")
