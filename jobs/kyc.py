"""KYC approvals that lapsed become EXPIRED (resolvers.identity.kyc.expire_lapsed), and the identity registries
caught up with KYC (resolvers.identity.registry_sync.reconcile), run periodically by the worker's
scheduler (jobs/actors.py). Idempotent: a case already expired is not APPROVED any more."""

from __future__ import annotations

import logging

import dramatiq

from jobs import broker  # noqa: F401  (installs the broker first)
from jobs.context import job_context
from jobs.scheduler import release
from resolvers.identity.kyc import expire_lapsed

log = logging.getLogger("rwa.jobs.kyc")


@dramatiq.actor(queue_name="identity", max_retries=3, min_backoff=500, max_backoff=10_000)
async def expire_kyc_approvals() -> None:
    ctx = job_context()
    try:
        async with ctx.session_factory() as session:
            n = await expire_lapsed(session, hub=ctx.hub)
        if n:
            log.info("expired %d lapsed KYC approvals", n)
    finally:
        release("expire_kyc_approvals")


@dramatiq.actor(queue_name="identity", max_retries=3, min_backoff=500, max_backoff=10_000)
async def reconcile_identity_registries() -> None:
    """Enqueue the identity operations the KYC state needs and no decision queued: the registry of a newly
    tokenized asset (existing approved wallets get registered), a trigger missed (resolvers/identity/registry_sync)."""
    from resolvers.identity.registry_sync import reconcile

    ctx = job_context()
    try:
        async with ctx.session_factory() as session:
            n = await reconcile(session)
            await session.commit()
        if n:
            log.info("queued %d identity registry operations", n)
    finally:
        release("reconcile_identity_registries")
