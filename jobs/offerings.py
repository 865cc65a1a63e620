"""Offerings whose closing time has passed are closed and allocated (resolvers.issuance.closing.close_offering),
run periodically by the worker's scheduler (jobs/actors.py), then their leftovers released in a second transaction
(closing.release_leftovers). Idempotent: a closed offering is not OPEN any more, and each offering closes in its own
transaction, so one failing offering does not hold the others back."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import dramatiq
from sqlalchemy import select

from jobs import broker  # noqa: F401  (installs the broker first)
from jobs.context import job_context
from jobs.scheduler import release
from models.issuance import Offering, OfferingState
from resolvers.issuance.closing import close_offering, release_leftovers
from resolvers.issuance.offerings import SYSTEM

log = logging.getLogger("rwa.jobs.offerings")
BATCH = 20


async def close_due(session_factory) -> int:
    """Close every OPEN offering past its closing time; returns how many were closed."""
    async with session_factory() as session:
        due = list(
            (
                await session.execute(
                    select(Offering.id)
                    .where(Offering.state == OfferingState.OPEN, Offering.closes_at <= datetime.now(UTC))
                    .order_by(Offering.closes_at)
                    .limit(BATCH)
                )
            ).scalars()
        )
    closed = 0
    for offering_id in due:
        async with session_factory() as session:
            try:
                await close_offering(session, SYSTEM, offering_id)
                await session.commit()
                closed += 1
                await release_leftovers(session, offering_id)  # its own transaction (closing.py)
                await session.commit()
            except Exception:
                await session.rollback()
                log.exception("could not close offering %s", offering_id)
    return closed


@dramatiq.actor(queue_name="issuance", max_retries=3, min_backoff=500, max_backoff=10_000)
async def close_due_offerings() -> None:
    try:
        n = await close_due(job_context().session_factory)
        if n:
            log.info("closed %d offerings at their closing time", n)
    finally:
        release("close_due_offerings")
