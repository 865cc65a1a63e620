"""A payment mutation aborted by a real deadlock runs again as a whole (notify.commit_unit): the payment changes
once, and its webhook outbox holds one delivery per endpoint, not one per attempt."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

from sqlalchemy import func, select

from models.identity import AuditLog, User
from models.payments import PaymentMethod, PaymentState, PaymentTransition, WebhookDelivery, WebhookEndpoint
from resolvers.payments import intents, notify
from tests.deadlock import app_sessions as factory  # noqa: F401  (a fixture)
from tests.deadlock import deadlock_once


async def test_cancel_payment_runs_again_after_a_deadlock_and_queues_its_webhook_once(  # type: ignore[no-untyped-def]
    module_database_url, factory, caplog
):
    user_id, endpoint_id = uuid.uuid4(), uuid.uuid4()
    async with factory() as s:
        s.add(User(id=user_id, email=f"p-{user_id.hex[:8]}@example.com", password_hash="x"))
        s.add(WebhookEndpoint(id=endpoint_id, url="http://127.0.0.1:9/hook", active=True))
        await s.flush()
        payment, _ = await intents.create_payment(
            s,
            None,
            user_id=user_id,
            amount=Decimal("10"),  # type: ignore[arg-type]
            currency="EUR",
            method=PaymentMethod.BANK_TRANSFER,
            idempotency_key="deadlock",
        )
        await notify.commit(s, None, "")
    caplog.set_level(logging.INFO, logger="rwa.db")
    async with factory() as s:
        # the cancel locks the payment, then its outbox row's foreign key needs the endpoint the other side holds
        task = await deadlock_once(
            module_database_url,
            ("SELECT id FROM webhook_endpoints WHERE id = $1 FOR UPDATE", (endpoint_id,)),
            ("SELECT id FROM payments WHERE id = $1 FOR UPDATE", (payment.id,)),
            lambda: notify.commit_unit(s, lambda: intents.cancel(s, payment.id, user_id, staff=False), None, ""),
        )
        canceled = await task
    assert canceled.state is PaymentState.CANCELED
    assert any("40P01" in r.getMessage() for r in caplog.records)
    async with factory() as s:
        count = select(func.count())
        assert (
            await s.scalar(
                count.select_from(WebhookDelivery).where(
                    WebhookDelivery.event == "payment.canceled", WebhookDelivery.endpoint_id == endpoint_id
                )
            )
            == 1
        )
        assert (
            await s.scalar(
                count.select_from(PaymentTransition).where(
                    PaymentTransition.payment_id == payment.id, PaymentTransition.to_state == "CANCELED"
                )
            )
            == 1
        )
        assert (
            await s.scalar(
                count.select_from(AuditLog).where(
                    AuditLog.action == "payment.cancel", AuditLog.target_id == str(payment.id)
                )
            )
            == 1
        )
