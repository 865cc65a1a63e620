"""Payments: intents, reconciliation states, refunds, the settlement report and webhook administration.
Types and fields only; the work is in resolvers/payments and resolvers/webhooks."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, TypeAlias, TypeVar

import strawberry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.scalars import JSON
from strawberry.types import Info

from core.hd_wallet import DepositWallet
from core.webhook_targets import TargetPolicy
from models.identity import Role
from models.payments import OutgoingTransfer as OutgoingTransferModel
from models.payments import Payment as PaymentModel
from models.payments import PaymentMethod as PaymentMethodModel
from models.payments import PaymentRefund as PaymentRefundModel
from models.payments import PaymentState as PaymentStateModel
from models.payments import WebhookDelivery as WebhookDeliveryModel
from models.payments import WebhookEndpoint as WebhookEndpointModel
from resolvers.payments import intents, notify, payouts, refunds, report, webhooks
from resolvers.payments.report import plain
from schema.lookups import found
from schema.mutations import after_commit, mutation
from schema.node import Node, register_node
from schema.pagination import Connection
from schema.permissions import authenticated, requires
from schema.scalars import BigInt
from schema.sharing import PRIVATE

T = TypeVar("T")

strawberry.enum(PaymentMethodModel, description="STABLECOIN (chain + token) or BANK_TRANSFER.")
PaymentMethod: TypeAlias = PaymentMethodModel
strawberry.enum(
    PaymentStateModel,
    description=(
        "AWAITING_FUNDS -> DETECTED (transfer seen) -> CONFIRMED (final on its chain; cash credited once). UNDERPAID "
        "waits for top-ups until expiry; OVERPAID credits the intended amount and flags the excess for refund; LATE: "
        "funds after expiry, held for review; a reorg before finality returns DETECTED/UNDERPAID to AWAITING_FUNDS."
    ),
)
PaymentState: TypeAlias = PaymentStateModel
STAFF = (Role.ADMIN, Role.COMPLIANCE)


@strawberry.enum(
    description=(
        "A stablecoin refund's on-chain payout: PENDING until the treasury's transfer is final (COMPLETED) or "
        "FAILED (the refund is then undone)."
    )
)
class PayoutState(enum.Enum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@strawberry.enum(
    description=(
        "PENDING (waiting to be sent), QUEUED (handed to the worker), DELIVERED (a 2xx answer came) or DEAD "
        "(every retry failed: a dead letter, see redeliverWebhook)."
    )
)
class WebhookDeliveryState(enum.Enum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"


def _staff(info: Info) -> bool:
    return info.context.viewer.has_role(*(r.value for r in STAFF))


@strawberry.type(description="An intent to fund the caller's cash account.")
class Payment(Node):
    user_id: uuid.UUID
    method: PaymentMethod
    state: PaymentState
    amount: Decimal = strawberry.field(description="Intended amount in `currency`.")
    currency: str = strawberry.field(description="ISO-4217 for bank transfers; the token's symbol for stablecoins.")
    chain_id: int | None
    token_address: str | None
    deposit_address: str | None = strawberry.field(description="Send exactly `amount` of the token here.")
    amount_units: BigInt | None = strawberry.field(description="Intended amount in raw token units.")
    received_units: BigInt = strawberry.field(description="Matched so far, final or not.")
    final_units: BigInt = strawberry.field(description="Matched in finalized blocks.")
    reference_code: str | None = strawberry.field(description="BANK_TRANSFER: quote it in the transfer.")
    bank_reference: str | None
    received_amount: Decimal = strawberry.field(description="Final funds received, in `currency`.")
    credited_amount: Decimal
    refundable_amount: Decimal = strawberry.field(description="Excess or held funds flagged for refund.")
    refunded_amount: Decimal
    expires_at: datetime
    detected_at: datetime | None
    confirmed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, p: PaymentModel) -> Payment:
        return cls(
            id=p.id,
            user_id=p.user_id,
            method=p.method,
            state=p.state,
            amount=plain(p.amount),
            currency=p.currency,
            chain_id=p.chain_id,
            token_address=p.token_address,
            deposit_address=p.deposit_address,
            amount_units=p.amount_units,
            received_units=p.received_units,
            final_units=p.final_units,
            reference_code=p.reference_code,
            bank_reference=p.bank_reference,
            received_amount=plain(p.received_amount),
            credited_amount=plain(p.credited_amount),
            refundable_amount=plain(p.refundable_amount),
            refunded_amount=plain(p.refunded_amount),
            expires_at=p.expires_at,
            detected_at=p.detected_at,
            confirmed_at=p.confirmed_at,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )


@strawberry.type(description="A live change of one payment (a transition, or more funds seen).")
class PaymentUpdate:
    payment_id: uuid.UUID
    state: PaymentState
    previous_state: PaymentState | None
    received_amount: Decimal
    credited_amount: Decimal

    @classmethod
    def from_event(cls, e: dict) -> PaymentUpdate:
        prev = e.get("previousState")
        return cls(
            payment_id=uuid.UUID(e["id"]),
            state=PaymentStateModel(e["state"]),
            previous_state=PaymentStateModel(prev) if prev else None,
            received_amount=plain(Decimal(e["receivedAmount"])),
            credited_amount=plain(Decimal(e["creditedAmount"])),
        )


@strawberry.type(description="Money given back on a payment (ADMIN's refundPayment).")
class PaymentRefund(Node):
    payment_id: uuid.UUID
    amount: Decimal
    reason: str
    created_at: datetime
    payment: Payment
    payout_state: PayoutState | None = strawberry.field(
        default=None,
        description=(
            "STABLECOIN refunds: the on-chain payout, PENDING until the treasury's transfer is final (COMPLETED) or "
            "FAILED (the refund is then undone); null for bank transfers."
        ),
    )
    payout_tx_hash: str | None = None

    @classmethod
    def from_model(
        cls,
        r: PaymentRefundModel,
        payment: PaymentModel,
        payout: OutgoingTransferModel | None = None,
        payout_tx_hash: str | None = None,
    ) -> PaymentRefund:
        return cls(
            id=r.id,
            payment_id=r.payment_id,
            amount=plain(r.amount),
            reason=r.reason,
            created_at=r.created_at,
            payment=Payment.from_model(payment),
            payout_state=PayoutState(payout.state) if payout else None,
            payout_tx_hash=payout_tx_hash,
        )


@strawberry.type(description="Totals of the payments created in the window with one state, method, currency and chain.")
class SettlementLine:
    state: PaymentState
    method: PaymentMethod
    currency: str
    chain_id: int | None
    count: int
    amount: Decimal
    received: Decimal
    credited: Decimal
    refunded: Decimal
    refundable: Decimal


@strawberry.type(description="An https URL that payment events are POSTed to (signed per Standard Webhooks).")
class WebhookEndpoint(Node):
    url: str
    active: bool
    created_at: datetime

    @classmethod
    def from_model(cls, e: WebhookEndpointModel) -> WebhookEndpoint:
        return cls(id=e.id, url=e.url, active=e.active, created_at=e.created_at)


@strawberry.type(description="One event for one endpoint: PENDING, QUEUED, DELIVERED, or DEAD (every retry failed).")
class WebhookDelivery(Node):
    endpoint_id: uuid.UUID | None
    url: str
    event: str
    payload: JSON
    state: WebhookDeliveryState
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def from_model(cls, d: WebhookDeliveryModel) -> WebhookDelivery:
        return cls(
            id=d.id,
            endpoint_id=d.endpoint_id,
            url=d.url,
            event=d.event,
            payload=JSON(d.payload),
            state=WebhookDeliveryState(d.state),
            attempts=d.attempts,
            last_error=d.last_error,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
        )


@strawberry.input
class CreatePaymentInput:
    amount: Decimal
    currency: str
    method: PaymentMethod
    idempotency_key: str = strawberry.field(
        description=(
            "1 to 120 visible characters (no spaces or control characters): the same key returns the same payment "
            "(per user)."
        )
    )
    chain_id: int | None = None
    token: str | None = strawberry.field(default=None, description="STABLECOIN: the token contract address.")
    expires_in: int = strawberry.field(default=intents.DEFAULT_EXPIRES_S, description="Seconds.")


async def _unit(info: Info, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """A payment mutation's database work and its webhook outbox, inside the mutation's unit of work (which commits
    and re-runs it on a transient error); the payment events are published after the commit (notify.stage)."""
    ctx = info.context
    session = await ctx.session()
    return await notify.stage(
        session,
        lambda: work(session),
        lambda publish: after_commit(info, publish),
        ctx.services.redis,
        ctx.settings.redis_prefix,
    )


@strawberry.type
class Query:
    @strawberry.field(
        extensions=authenticated(),
        description=(
            "Newest first. The caller's own payments; ADMIN and COMPLIANCE see everyone's (and may filter by userId). "
            "createdFrom inclusive, createdTo exclusive."
        ),
    )
    async def payments(
        self,
        info: Info,
        state: PaymentState | None = None,
        method: PaymentMethod | None = None,
        currency: str | None = None,
        chain_id: int | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        user_id: uuid.UUID | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Payment]:
        viewer = info.context.viewer
        owner = user_id if _staff(info) else viewer.require_user()
        f = intents.PaymentFilter(
            state=state,
            method=method,
            currency=currency,
            chain_id=chain_id,
            created_from=created_from,
            created_to=created_to,
            user_id=owner,
        )
        page = await intents.list_payments(
            await info.context.session(), f, first=first, after=after, last=last, before=before
        )
        return Connection.from_page(page, Payment.from_model)

    @strawberry.field(
        extensions=authenticated(),
        description=("One payment: its owner's, or any for ADMIN/COMPLIANCE; null when missing or not visible."),
    )
    async def payment(self, info: Info, id: uuid.UUID) -> Payment | None:
        viewer = info.context.viewer
        model = await found(intents.get_visible(await info.context.session(), id, viewer.require_user(), _staff(info)))
        return None if model is None else Payment.from_model(model)

    @strawberry.field(
        extensions=requires(*STAFF),
        description=("Totals per state, method, currency and chain of the payments created in [from, to)."),
    )
    async def settlement_report(
        self, info: Info, from_: Annotated[datetime, strawberry.argument(name="from")], to: datetime
    ) -> list[SettlementLine]:
        lines = await report.settlement_report(await info.context.session(), from_, to)
        return [SettlementLine(**vars(line)) for line in lines]

    @strawberry.field(extensions=requires(Role.ADMIN), description="Where payment events are POSTed.")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        return [WebhookEndpoint.from_model(e) for e in await webhooks.endpoints(await info.context.session())]

    @strawberry.field(
        extensions=requires(Role.ADMIN),
        description=("Webhook deliveries, newest first; state DEAD lists the dead letters."),
    )
    async def webhook_deliveries(
        self,
        info: Info,
        state: WebhookDeliveryState | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[WebhookDelivery]:
        page = await webhooks.deliveries(
            await info.context.session(), state.value if state is not None else None, first, after
        )
        return Connection.from_page(page, WebhookDelivery.from_model)


@strawberry.type
class Mutation:
    @mutation(
        extensions=authenticated(),
        description=(
            "Create a payment, or return the one created earlier with the same idempotencyKey. Too many decimals for "
            "the currency (ISO-4217 minor units, or the token's decimals) is BAD_USER_INPUT."
        ),
    )
    async def create_payment(self, info: Info, input: CreatePaymentInput) -> Payment:
        ctx = info.context
        payment, _ = await _unit(
            info,
            lambda s: intents.create_payment(
                s,
                DepositWallet.from_settings(ctx.settings),
                user_id=ctx.viewer.require_user(),
                amount=input.amount,
                currency=input.currency,
                method=input.method,
                idempotency_key=input.idempotency_key,
                chain_id=input.chain_id,
                token=input.token,
                expires_in=input.expires_in,
                request_id=ctx.request_id,
            ),
        )
        return Payment.from_model(payment)

    @mutation(extensions=authenticated(), description="AWAITING_FUNDS -> CANCELED (owner or ADMIN).")
    async def cancel_payment(self, info: Info, id: uuid.UUID) -> Payment:
        ctx = info.context
        payment = await _unit(
            info,
            lambda s: intents.cancel(
                s, id, ctx.viewer.require_user(), staff=ctx.viewer.has_role(Role.ADMIN.value), request_id=ctx.request_id
            ),
        )
        return Payment.from_model(payment)

    @mutation(
        extensions=requires(Role.ADMIN),
        description=("The bank shows the transfer: credit the intended amount (once) and record the bank's reference."),
    )
    async def confirm_bank_transfer(self, info: Info, payment_id: uuid.UUID, bank_reference: str) -> Payment:
        ctx = info.context
        payment = await _unit(
            info,
            lambda s: refunds.confirm_bank_transfer(
                s, payment_id, bank_reference, ctx.viewer.require_user(), ctx.request_id
            ),
        )
        return Payment.from_model(payment)

    @mutation(
        extensions=requires(Role.ADMIN),
        description=(
            "Refund `amount` (default: all that is left). Held/excess funds are paid back first, then the credited "
            "cash; a stablecoin refund is paid on chain by the treasury to the paying address (payoutState). With an "
            "idempotencyKey a retry returns the same refund; the key with another amount or reason: "
            "IDEMPOTENCY_KEY_REUSED."
        ),
    )
    async def refund_payment(
        self,
        info: Info,
        payment_id: uuid.UUID,
        reason: str,
        amount: Decimal | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentRefund:
        ctx = info.context
        row, payment = await _unit(
            info,
            lambda s: refunds.refund(
                s,
                payment_id,
                amount,
                reason,
                ctx.viewer.require_user(),
                ctx.request_id,
                idempotency_key=idempotency_key,
            ),
        )
        session = await ctx.session()
        await session.flush()  # the payout row (autoflush is off), read before the unit of work commits
        payout = (
            await session.execute(select(OutgoingTransferModel).where(OutgoingTransferModel.refund_id == row.id))
        ).scalar_one_or_none()
        return PaymentRefund.from_model(row, payment, payout, await payouts.payout_tx_hash(session, payout))

    @mutation(extensions=requires(Role.ADMIN), description="LATE -> CONFIRMED: credit the held funds.")
    async def accept_late_payment(self, info: Info, payment_id: uuid.UUID, reason: str) -> Payment:
        ctx = info.context
        payment = await _unit(
            info, lambda s: refunds.accept_late(s, payment_id, ctx.viewer.require_user(), reason, ctx.request_id)
        )
        return Payment.from_model(payment)

    @mutation(extensions=requires(Role.ADMIN), description="Give up on a payment nothing was credited for.")
    async def fail_payment(self, info: Info, payment_id: uuid.UUID, reason: str) -> Payment:
        ctx = info.context
        payment = await _unit(
            info, lambda s: refunds.fail(s, payment_id, reason, ctx.viewer.require_user(), ctx.request_id)
        )
        return Payment.from_model(payment)

    @mutation(
        extensions=requires(Role.ADMIN),
        description=(
            "POST payment events to this https URL. Its host must resolve to public addresses only (checked now and "
            "before every delivery): else the error code WEBHOOK_TARGET_REFUSED."
        ),
    )
    async def create_webhook_endpoint(self, info: Info, url: str) -> WebhookEndpoint:
        ctx = info.context
        policy = TargetPolicy.from_settings(ctx.settings)
        row = await _unit(
            info, lambda s: webhooks.create_endpoint(s, url, ctx.viewer.require_user(), ctx.request_id, policy)
        )
        return WebhookEndpoint.from_model(row)

    @mutation(extensions=requires(Role.ADMIN), description="Stop sending to this endpoint.")
    async def disable_webhook_endpoint(self, info: Info, id: uuid.UUID) -> WebhookEndpoint:
        ctx = info.context
        row = await _unit(info, lambda s: webhooks.disable_endpoint(s, id, ctx.viewer.require_user(), ctx.request_id))
        return WebhookEndpoint.from_model(row)

    @mutation(extensions=requires(Role.ADMIN), description="Send a dead letter again (DEAD -> PENDING).")
    async def redeliver_webhook(self, info: Info, id: uuid.UUID) -> WebhookDelivery:
        ctx = info.context
        row = await _unit(info, lambda s: webhooks.redeliver(s, id, ctx.viewer.require_user(), ctx.request_id))
        return WebhookDelivery.from_model(row)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        extensions=authenticated(),
        metadata=PRIVATE,
        description=("The payment's current state, then every change (its owner, or ADMIN/COMPLIANCE)."),
    )
    async def payment_updates(self, info: Info, id: uuid.UUID) -> AsyncGenerator[PaymentUpdate, None]:
        ctx = info.context
        async with ctx.services.session_factory() as session:
            payment = await intents.get_visible(session, id, ctx.viewer.require_user(), _staff(info))
            first = notify.event_payload(payment, None)
        async with ctx.services.pubsub.listen(notify.channel(id)) as events:
            yield PaymentUpdate.from_event(first)
            async for raw in events:
                yield PaymentUpdate.from_event(json.loads(raw))


async def load_payment(info: Info, id: uuid.UUID) -> Payment | None:
    """`node(id)` for a Payment: like `payment(id)`, its owner's, or any for ADMIN/COMPLIANCE."""
    viewer = info.context.viewer
    if viewer.user_id is None:
        return None
    model = await found(intents.get_visible(await info.context.session(), id, viewer.user_id, _staff(info)))
    return None if model is None else Payment.from_model(model)


async def load_payment_refund(info: Info, id: uuid.UUID) -> PaymentRefund | None:
    """`node(id)` for a PaymentRefund: ADMIN/COMPLIANCE only (no query lists refunds to a payment's owner)."""
    if info.context.viewer.user_id is None or not _staff(info):
        return None
    session = await info.context.session()
    row = await session.get(PaymentRefundModel, id)
    if row is None:
        return None
    payment = await intents.get(session, row.payment_id)
    payout = (
        await session.execute(select(OutgoingTransferModel).where(OutgoingTransferModel.refund_id == row.id))
    ).scalar_one_or_none()
    return PaymentRefund.from_model(row, payment, payout, await payouts.payout_tx_hash(session, payout))


def _admin(info: Info) -> bool:
    return info.context.viewer.user_id is not None and info.context.viewer.has_role(Role.ADMIN.value)


async def load_webhook_endpoint(info: Info, id: uuid.UUID) -> WebhookEndpoint | None:
    """`node(id)` for a WebhookEndpoint: ADMIN only, like `webhookEndpoints`."""
    if not _admin(info):
        return None
    row = await (await info.context.session()).get(WebhookEndpointModel, id)
    return None if row is None else WebhookEndpoint.from_model(row)


async def load_webhook_delivery(info: Info, id: uuid.UUID) -> WebhookDelivery | None:
    """`node(id)` for a WebhookDelivery: ADMIN only, like `webhookDeliveries`."""
    if not _admin(info):
        return None
    row = await (await info.context.session()).get(WebhookDeliveryModel, id)
    return None if row is None else WebhookDelivery.from_model(row)


register_node("Payment", "payments", load_payment)
register_node("PaymentRefund", "payment_refunds", load_payment_refund)
register_node("WebhookEndpoint", "webhook_endpoints", load_webhook_endpoint)
register_node("WebhookDelivery", "webhook_deliveries", load_webhook_delivery)
