"""Webhook endpoints (managed by ADMIN), the delivery outbox and one delivery attempt.

Deliveries are rows written in the same transaction as the transition they announce (notify.write_outbox).
The worker's scheduler claims PENDING rows (-> QUEUED) and sends their ids to `deliver_webhook`; each attempt
POSTs the JSON payload signed per Standard Webhooks (core/webhooks.py). A failed attempt raises so dramatiq retries it
with exponential backoff; when retries are exhausted the row becomes DEAD (a dead letter, listed to ADMIN).

Targets (core/webhook_targets.py): an endpoint URL must be public https when registered, and each attempt checks it
again on what its host resolves to at that moment and connects to that checked address (no redirects followed,
the response body never read). A URL the policy refuses makes the delivery DEAD at once; a host that does not
resolve is retried.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict, NotFound
from core.webhook_targets import Resolver, TargetPolicy, TargetRefused, resolve_target, system_resolve
from core.webhooks import headers as signed_headers
from models.payments import WebhookDelivery, WebhookEndpoint
from resolvers.audit import record
from resolvers.pagination import Page, keyset_page

STATES = ("PENDING", "QUEUED", "DELIVERED", "DEAD")
REQUEUE_AFTER = timedelta(minutes=15)  # a QUEUED row this old lost its message (broker restart): send again


class DeliveryFailed(Exception):
    """The receiver did not answer 2xx; dramatiq retries."""


async def check_url(url: str, policy: TargetPolicy, resolve: Resolver = system_resolve) -> str:
    """The URL to store, if webhooks may be sent to it now; BAD_USER_INPUT (reason WEBHOOK_TARGET_REFUSED) if not."""
    url = url.strip()
    try:
        await resolve_target(url, policy, resolve)
    except TargetRefused as exc:
        raise BadUserInput(exc.message, field="url", reason="WEBHOOK_TARGET_REFUSED") from None
    return url


async def endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    return list((await session.execute(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at))).scalars())


async def create_endpoint(
    session: AsyncSession,
    url: str,
    actor_id: uuid.UUID,
    request_id: str | None,
    policy: TargetPolicy,
    resolve: Resolver = system_resolve,
) -> WebhookEndpoint:
    row = WebhookEndpoint(id=uuid.uuid4(), url=await check_url(url, policy, resolve), active=True)
    session.add(row)
    await session.flush()
    await session.refresh(row)
    record(
        session,
        actor_id=actor_id,
        action="webhook.create_endpoint",
        target_type="webhook_endpoint",
        target_id=row.id,
        request_id=request_id,
        details={"url": row.url},
    )
    return row


async def disable_endpoint(
    session: AsyncSession, endpoint_id: uuid.UUID, actor_id: uuid.UUID, request_id: str | None
) -> WebhookEndpoint:
    row = await session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    if row is None:
        raise NotFound("webhook endpoint not found")
    row.active = False
    record(
        session,
        actor_id=actor_id,
        action="webhook.disable_endpoint",
        target_type="webhook_endpoint",
        target_id=row.id,
        request_id=request_id,
    )
    return row


async def deliveries(session: AsyncSession, state: str | None, first: int | None, after: str | None) -> Page:
    stmt = select(WebhookDelivery)
    if state is not None:
        if state not in STATES:
            raise BadUserInput(f"state must be one of {', '.join(STATES)}", field="state")
        stmt = stmt.where(WebhookDelivery.state == state)
    return await keyset_page(
        session, stmt, [WebhookDelivery.created_at, WebhookDelivery.id], descending=True, first=first, after=after
    )


async def redeliver(
    session: AsyncSession, delivery_id: uuid.UUID, actor_id: uuid.UUID, request_id: str | None
) -> WebhookDelivery:
    row = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if row is None:
        raise NotFound("webhook delivery not found")
    if row.state != "DEAD":
        raise Conflict("only dead letters can be redelivered", reason="INVALID_STATE")
    row.state, row.attempts, row.last_error = "PENDING", 0, None
    record(
        session,
        actor_id=actor_id,
        action="webhook.redeliver",
        target_type="webhook_delivery",
        target_id=row.id,
        request_id=request_id,
    )
    return row


async def claim_pending(session: AsyncSession, limit: int = 500) -> list[uuid.UUID]:
    """PENDING (and long-lost QUEUED) -> QUEUED; returns the ids to send to the actor. The caller commits."""
    rows = await session.execute(
        text(
            "UPDATE webhook_deliveries SET state = 'QUEUED' WHERE id IN ("
            " SELECT id FROM webhook_deliveries WHERE state = 'PENDING' OR (state = 'QUEUED' AND created_at < :stale)"
            " ORDER BY created_at LIMIT :n FOR UPDATE SKIP LOCKED) RETURNING id"
        ),
        {"stale": datetime.now(UTC) - REQUEUE_AFTER, "n": limit},
    )
    return [r[0] for r in rows]


def delivery_client(timeout_s: float = 10.0) -> httpx.AsyncClient:
    """The HTTP client deliveries go through: no redirects, no proxy from the environment (the checked address is
    the one connected to), and no kept-alive connections (a pooled TLS connection is keyed by address, not by the
    host name it was verified for)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def attempt(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    secret: bytes,
    client: httpx.AsyncClient,
    policy: TargetPolicy,
    resolve: Resolver = system_resolve,
) -> bool:
    """POST once. True when delivered (or already delivered/dead: nothing to do); raises DeliveryFailed. A target
    the policy refuses ends the delivery (DEAD, with the reason); only an unresolvable host is retried."""
    row = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if row is None or row.state in ("DELIVERED", "DEAD"):
        await session.rollback()
        return True
    body = json.dumps({"id": str(row.id), "event": row.event, "data": row.payload}, separators=(",", ":")).encode()
    row.attempts += 1
    error: str | None = None
    try:
        target = await resolve_target(row.url, policy, resolve)
    except TargetRefused as exc:
        row.last_error = f"refused: {exc.message}"[:500]
        if not exc.retryable:
            row.state = "DEAD"
            # the delivery job: each attempt's outcome is its own transaction (no unit of work)
            await session.commit()
            return False
        # the delivery job: the refusal is recorded before the retry is scheduled
        await session.commit()
        raise DeliveryFailed(row.last_error) from None
    # Standard Webhooks: webhook-id is the delivery's id (stable across retries), signed with this attempt's time
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "X-RWA-Event": row.event,
        **signed_headers(secret, str(row.id), body),
    }
    # TLS to the checked address, verified for the host name
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        for n, address in enumerate(target.addresses):  # each checked address in turn until one accepts
            request = client.build_request(
                "POST", target.pinned_url(address), content=body, headers=headers, extensions=extensions
            )
            try:
                reply = await client.send(request, follow_redirects=False, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if n + 1 < len(target.addresses):
                    continue  # e.g. an AAAA answer on a host without IPv6 routes
                raise
            await reply.aclose()  # the status is all we need: never read a receiver's body
            if not 200 <= reply.status_code < 300:
                error = f"HTTP {reply.status_code}"
            break
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    if error is None:
        row.state, row.delivered_at, row.last_error = "DELIVERED", datetime.now(UTC), None
        # the delivery job: recorded after the HTTP POST, in its own transaction
        await session.commit()
        return True
    row.last_error = error
    # the delivery job: the failure is recorded before the retry is scheduled
    await session.commit()
    raise DeliveryFailed(error)


async def mark_dead(session: AsyncSession, delivery_id: uuid.UUID) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state != "DELIVERED")
        .values(state="DEAD")
    )
    # the delivery job: its own transaction
    await session.commit()
