"""Payment actors: reconcile one chain, expire overdue payments. Both take plain ids and are idempotent (a
duplicate or retried message finds nothing left to do; credits are keyed by payment in the ledger)."""

from __future__ import annotations

import logging

import dramatiq

from jobs import broker  # noqa: F401  (installs the broker first)
from jobs.context import job_context
from jobs.scheduler import release
from resolvers.payments import reconcile

log = logging.getLogger("rwa.jobs.payments")


@dramatiq.actor(queue_name="payments", max_retries=3, min_backoff=500, max_backoff=10_000, time_limit=600_000)
async def reconcile_chain(chain_id: int) -> None:
    ctx = job_context()
    try:
        stats = await reconcile.reconcile_chain(ctx.session_factory, chain_id, redis=ctx.redis, prefix=ctx.prefix)
        if stats.changed:
            log.info("chain %s: %d payments changed %s", chain_id, stats.changed, stats.transitions)
    finally:
        release("reconcile_chain", chain_id)


@dramatiq.actor(queue_name="payments", max_retries=3, min_backoff=500, max_backoff=10_000)
async def expire_payments() -> None:
    ctx = job_context()
    try:
        n = await reconcile.expire_payments(ctx.session_factory, redis=ctx.redis, prefix=ctx.prefix)
        if n:
            log.info("expired %d payments", n)
    finally:
        release("expire_payments")
