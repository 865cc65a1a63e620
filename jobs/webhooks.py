"""Webhook actors: hand PENDING deliveries to `deliver_webhook`, which POSTs one (HMAC-signed) and raises on
failure so dramatiq retries it with exponential backoff; when retries run out `webhook_dead_letter` marks the
row DEAD (listed to ADMIN by Query.webhookDeliveries(state: DEAD))."""

from __future__ import annotations

import uuid

import dramatiq

from core.settings import get_settings
from core.webhook_targets import TargetPolicy
from core.webhooks import secret_for
from jobs import broker  # noqa: F401  (installs the broker first)
from jobs.context import job_context
from jobs.scheduler import release
from resolvers.payments import webhooks
from resolvers.payments.webhooks import DeliveryFailed

# retry policy from the settings object (RWA_WEBHOOK_MAX_RETRIES / _MIN_BACKOFF_MS / _MAX_BACKOFF_MS)
MAX_RETRIES = get_settings().webhook_max_retries
MIN_BACKOFF_MS = get_settings().webhook_min_backoff_ms
MAX_BACKOFF_MS = get_settings().webhook_max_backoff_ms


@dramatiq.actor(
    queue_name="webhooks",
    max_retries=MAX_RETRIES,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
    on_retry_exhausted="webhook_dead_letter",
    time_limit=60_000,
)
async def deliver_webhook(delivery_id: str) -> None:
    ctx = job_context()
    async with ctx.session_factory() as session:
        await webhooks.attempt(
            session,
            uuid.UUID(delivery_id),
            secret_for(ctx.settings),
            ctx.http,
            TargetPolicy.from_settings(ctx.settings),
        )


@dramatiq.actor(queue_name="webhooks", max_retries=10)
async def webhook_dead_letter(message_data: dict, retry_info: dict) -> None:
    ctx = job_context()
    async with ctx.session_factory() as session:
        await webhooks.mark_dead(session, uuid.UUID(message_data["args"][0]))


@dramatiq.actor(queue_name="webhooks", max_retries=3, min_backoff=500)
async def dispatch_webhooks() -> None:
    ctx = job_context()
    try:
        async with ctx.session_factory() as session:
            ids = await webhooks.claim_pending(session)
            await session.commit()
        for delivery_id in ids:
            deliver_webhook.send(str(delivery_id))
    finally:
        release("dispatch_webhooks")


__all__ = ["DeliveryFailed", "deliver_webhook", "dispatch_webhooks", "webhook_dead_letter"]
