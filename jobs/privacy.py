"""Retention (resolvers/privacy/retention.py): destroy data keys whose legal hold ended, delete expired sessions and
revoked API keys; run hourly by the worker's scheduler (jobs/actors.py). Idempotent."""

from __future__ import annotations

import logging

import dramatiq

from jobs import broker  # noqa: F401  (installs the broker first)
from jobs.context import job_context
from jobs.scheduler import release
from resolvers.privacy.retention import purge

log = logging.getLogger("rwa.jobs.privacy")
INTERVAL_S = 3600.0


@dramatiq.actor(queue_name="identity", max_retries=3, min_backoff=500, max_backoff=10_000)
async def purge_past_retention() -> None:
    ctx = job_context()
    try:
        async with ctx.session_factory() as session:
            done = await purge(session, ctx.settings)
        if done.keys_destroyed or done.sessions or done.api_keys:
            log.info(
                "retention: %d data keys destroyed, %d sessions and %d API keys deleted",
                done.keys_destroyed,
                done.sessions,
                done.api_keys,
            )
    finally:
        release("purge_past_retention")
