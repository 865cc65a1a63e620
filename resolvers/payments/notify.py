"""Notifications of payment transitions, sent only for what was committed.

`states.transition` queues an event on the session; `commit(session, redis, prefix)` writes one webhook
delivery row per active endpoint and event (an outbox, in the same transaction as the transition), commits,
then publishes each event on the Redis channel `payments:<id>` (what `paymentUpdates` listens to). The worker's
scheduler hands PENDING deliveries to the `deliver_webhook` actor. A mutation does the same inside its unit of work
with `stage` (the unit of work commits; the publish is queued to run after that commit).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from models.payments import Payment, PaymentState
from resolvers.unit_of_work import UnitOfWork

log = logging.getLogger("rwa.payments")
_KEY = "payment_events"
T = TypeVar("T")


def channel(payment_id: object) -> str:
    return f"payments:{payment_id}"


def event_payload(payment: Payment, previous: PaymentState | None) -> dict[str, Any]:
    return {
        "id": str(payment.id),
        "userId": str(payment.user_id),
        "state": payment.state.value,
        "previousState": previous.value if previous else None,
        "method": payment.method.value,
        "amount": str(payment.amount),
        "currency": payment.currency,
        "chainId": payment.chain_id,
        "receivedAmount": str(payment.received_amount),
        "creditedAmount": str(payment.credited_amount),
    }


def event_name(e: dict[str, Any]) -> str:
    """payment.<new state> for a transition; payment.funds_updated when only the amounts seen changed."""
    return "payment.funds_updated" if e["previousState"] == e["state"] else f"payment.{e['state'].lower()}"


def queue(session: AsyncSession, payment: Payment, previous: PaymentState | None) -> None:
    session.info.setdefault(_KEY, []).append(event_payload(payment, previous))


def pending(session: AsyncSession) -> list[dict[str, Any]]:
    return list(session.info.get(_KEY, []))


async def write_outbox(session: AsyncSession) -> None:
    events = session.info.get(_KEY)
    if not events:
        return
    rows = [{"event": event_name(e), "payload": e} for e in events]
    await session.execute(
        text(
            "INSERT INTO webhook_deliveries (id, endpoint_id, url, event, payload, state, attempts) "
            "SELECT gen_random_uuid(), e.id, e.url, ev.event, ev.payload, 'PENDING', 0 "
            "FROM webhook_endpoints e CROSS JOIN jsonb_to_recordset(CAST(:events AS jsonb)) AS ev(event text, payload jsonb) "
            "WHERE e.active"
        ),
        {"events": json.dumps(rows)},
    )


async def commit_outbox(session: AsyncSession) -> None:
    """Write the outbox and commit (the end of a unit of work: core.transactions may re-run everything up to here)."""
    await write_outbox(session)
    # durable before notify.commit publishes the events (reconcile's own loop of transactions)
    await session.commit()


async def stage(
    session: AsyncSession,
    work: Callable[[], Awaitable[T]],
    after_commit: Callable[[Callable[[], Awaitable[object]]], None],
    redis: Redis | None,
    prefix: str,
) -> T:
    """`work` (a payment change on `session`) and its outbox, inside a unit of work that commits afterwards
    (resolvers.unit_of_work): the events `work` queued are written to the outbox now and handed to `after_commit`
    to be published once committed. Events left by an earlier, failed attempt are dropped first, and those of a
    failing attempt with it, so a re-run (deadlock) or a refused change publishes nothing twice or wrongly."""
    discard(session)
    try:
        result = await work()
        await write_outbox(session)
    except BaseException:
        discard(session)
        raise
    events = session.info.pop(_KEY, [])
    if redis is not None and events:
        after_commit(lambda: publish(redis, prefix, events))
    return result


async def commit_unit(session: AsyncSession, work: Callable[[], Awaitable[T]], redis: Redis | None, prefix: str) -> T:
    """`work`, its outbox and the commit as one UnitOfWork, without a request (jobs, the CLI): re-run from the
    start on a deadlock or serialization failure; the committed events are published once, after it."""
    uow = UnitOfWork(session)
    return await uow.run(lambda: stage(session, work, uow.after_commit, redis, prefix))


async def commit(session: AsyncSession, redis: Redis | None, prefix: str) -> list[dict[str, Any]]:
    """Write the outbox, commit, then publish. Returns the events sent."""
    await commit_outbox(session)
    return await publish_committed(session, redis, prefix)


async def publish_committed(session: AsyncSession, redis: Redis | None, prefix: str) -> list[dict[str, Any]]:
    """Publish the events of what was just committed (once). Returns them."""
    events = session.info.pop(_KEY, [])
    if redis is not None and events:
        await publish(redis, prefix, events)
    return events


async def publish(redis: Redis, prefix: str, events: list[dict[str, Any]]) -> None:
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for e in events:
                pipe.publish(prefix + channel(e["id"]), json.dumps(e))
            await pipe.execute()
    except Exception:  # the state is committed; a lost live update is recovered by re-reading the payment
        log.warning("could not publish %d payment events", len(events), exc_info=True)


def discard(session: AsyncSession) -> None:
    session.info.pop(_KEY, None)
