"""Treasury actions (ADMIN): confirm a bank transfer, accept a LATE payment, refund fully or partly.

Refunds pay back first what was held (excess of an OVERPAID payment, funds of a LATE or expired-underpaid one:
REFUNDS_PAYABLE -> WITHDRAWALS), then what was credited (the user's AVAILABLE -> WITHDRAWALS; CONFLICT
INSUFFICIENT_FUNDS if the user already spent it). One ledger movement per refund, so the ledger stays
balanced. A stablecoin refund also creates an outgoing transfer to the address the funds came from and queues its
payout on chain (resolvers/payments/payouts.py: the treasury pays; a failed payout undoes the refund).

An optional idempotency key (per payment, payment_refunds.idempotency_key, unique with payment_id) makes a retry safe:
the same key, amount as given (null: all that was left at the first call) and reason return the refund made the first
time and write nothing; other parameters: CONFLICT IDEMPOTENCY_KEY_REUSED. Calls on one payment are serialized by its
row lock, and the unique index decides if two ever race (the loser returns the winner's refund).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict
from models.ledger import AccountKind
from models.payments import OutgoingTransfer, Payment, PaymentMatch, PaymentMethod, PaymentRefund, PaymentState
from resolvers.audit import record
from resolvers.idempotency_keys import check_key
from resolvers.ledger import Platform, UserAccount, credit_deposit, post
from resolvers.payments import payouts
from resolvers.payments.intents import MINOR_UNITS, get, parse_amount, to_units
from resolvers.payments.states import Actor, transition

S = PaymentState
ZERO_ADDRESS = "0x" + "0" * 40
REFUNDABLE_STATES = (S.CONFIRMED, S.OVERPAID, S.PARTIALLY_REFUNDED, S.LATE, S.EXPIRED)
MAX_TEXT = 1000
BANK_REFERENCE_CHARS = 120
KEY_CHARS = 120


def _places(payment: Payment) -> int:
    return payment.decimals if payment.decimals is not None else MINOR_UNITS.get(payment.currency, 2)


def outstanding(payment: Payment) -> tuple[Decimal, Decimal]:
    """(held not yet refunded, credited not yet refunded): refunds consume the held part first."""
    held_left = max(payment.refundable_amount - payment.refunded_amount, Decimal(0))
    credit_refunded = max(payment.refunded_amount - payment.refundable_amount, Decimal(0))
    return held_left, payment.credited_amount - credit_refunded


def _text(value: str, field: str, limit: int = MAX_TEXT) -> str:
    value = " ".join(value.split())
    if not value or len(value) > limit:
        raise BadUserInput(f"{field} must be 1 to {limit} characters", field=field)
    return value


async def confirm_bank_transfer(
    session: AsyncSession,
    payment_id: uuid.UUID,
    bank_reference: str,
    actor_id: uuid.UUID,
    request_id: str | None = None,
) -> Payment:
    """The bank statement shows the money: credit the intended amount once and record the bank's reference."""
    # payments.bank_reference is VARCHAR(120): a longer one failed the UPDATE and came back INTERNAL (fuzz gate)
    reference = _text(bank_reference, "bankReference", BANK_REFERENCE_CHARS)
    payment = await get(session, payment_id, lock=True)
    if payment.method is not PaymentMethod.BANK_TRANSFER:
        raise BadUserInput("only BANK_TRANSFER payments are confirmed by hand", field="paymentId")
    if payment.state not in (S.AWAITING_FUNDS, S.EXPIRED):
        raise Conflict(f"a {payment.state.value} payment cannot be confirmed", reason="INVALID_STATE")
    await credit_deposit(
        session,
        payment.user_id,
        payment.amount,
        payment.currency,
        f"payment:{payment.id}:credit",
        {"paymentId": str(payment.id), "bankReference": reference},
    )
    payment.bank_reference = reference
    payment.received_amount = payment.credited_amount = payment.amount
    transition(session, payment, S.CONFIRMED, actor=Actor.ADMIN, actor_id=actor_id, reason=f"bank transfer {reference}")
    record(
        session,
        actor_id=actor_id,
        action="payment.confirm_bank_transfer",
        target_type="payment",
        target_id=payment.id,
        request_id=request_id,
        details={"bankReference": reference},
    )
    return payment


async def accept_late(
    session: AsyncSession, payment_id: uuid.UUID, actor_id: uuid.UUID, reason: str, request_id: str | None = None
) -> Payment:
    """Review of a LATE payment decided to keep it: the held funds go to the user's cash account."""
    why = _text(reason, "reason")
    payment = await get(session, payment_id, lock=True)
    if payment.state is not S.LATE:
        raise Conflict(f"a {payment.state.value} payment is not held for review", reason="INVALID_STATE")
    held, _ = outstanding(payment)
    await post(
        session,
        kind="CREDIT",
        reference=f"payment:{payment.id}:credit",
        currency=payment.currency,
        details={"paymentId": str(payment.id), "late": True},
        legs=[(Platform(AccountKind.REFUNDS_PAYABLE), -held), (UserAccount(payment.user_id), held)],
    )
    payment.credited_amount, payment.refundable_amount = held, payment.refunded_amount
    transition(session, payment, S.CONFIRMED, actor=Actor.ADMIN, actor_id=actor_id, reason=why)
    record(
        session,
        actor_id=actor_id,
        action="payment.accept_late",
        target_type="payment",
        target_id=payment.id,
        request_id=request_id,
        details={"reason": why, "amount": str(held)},
    )
    return payment


async def refund(
    session: AsyncSession,
    payment_id: uuid.UUID,
    amount: Decimal | None,
    reason: str,
    actor_id: uuid.UUID,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[PaymentRefund, Payment]:
    """Refund `amount` (None: everything still refundable), or return the refund made with this idempotency key (see
    the module docstring). The caller commits."""
    why = _text(reason, "reason")
    key = check_key(idempotency_key, field="idempotencyKey", max_chars=KEY_CHARS)
    payment = await get(session, payment_id, lock=True)
    requested = None if amount is None else parse_amount(amount, _places(payment))
    if key is not None:  # before the state checks: a retry of a full refund finds the payment REFUNDED
        existing = await _by_key(session, payment.id, key)
        if existing is not None:
            return _same(existing, requested, why), payment
    if payment.state not in REFUNDABLE_STATES:
        raise Conflict(f"a {payment.state.value} payment cannot be refunded", reason="INVALID_STATE")
    held, credited = outstanding(payment)
    available = held + credited
    if available <= 0:
        raise Conflict("nothing left to refund on this payment", reason="NOTHING_TO_REFUND")
    value = available if requested is None else requested
    if value > available:
        raise BadUserInput(
            f"at most {available} {payment.currency} can be refunded", field="amount", available=str(available)
        )
    payer = None
    if payment.method is PaymentMethod.STABLECOIN:  # who gets it back, found before anything is written
        await session.flush()  # matches the caller added (sessions do not autoflush)
        payer = (
            await session.execute(
                select(PaymentMatch.from_address)
                # a transfer from the zero address is a mint straight to the deposit address: no one to pay back
                # (the treasury's transfer to 0x0 reverted, on rwa dev, after the refund had been accepted)
                .where(PaymentMatch.payment_id == payment.id, PaymentMatch.from_address != ZERO_ADDRESS)
                .order_by(PaymentMatch.block_number.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if payer is None:
            raise Conflict("no on-chain transfer to refund to", reason="NO_SOURCE_ADDRESS")
    from_held = min(value, held)
    from_credit = value - from_held
    row = (
        await session.scalars(
            insert(PaymentRefund)
            .values(
                id=uuid.uuid4(),
                payment_id=payment.id,
                amount=value,
                reason=why,
                actor_id=actor_id,
                idempotency_key=key,
                requested_amount=requested,
            )
            .on_conflict_do_nothing(index_elements=["payment_id", "idempotency_key"])
            .returning(PaymentRefund)
        )
    ).one_or_none()
    if row is None:  # a concurrent call with this key won (only without the payment's lock): nothing written here
        winner = await _by_key(session, payment.id, key or "")
        assert winner is not None
        return _same(winner, requested, why), await get(session, payment.id)
    legs: list = [(Platform(AccountKind.WITHDRAWALS), value)]
    if from_held:
        legs.append((Platform(AccountKind.REFUNDS_PAYABLE), -from_held))
    if from_credit:
        legs.append((UserAccount(payment.user_id), -from_credit))
    await post(
        session,
        kind="REFUND",
        reference=f"payment:{payment.id}:refund:{row.id}",
        currency=payment.currency,
        details={"paymentId": str(payment.id), "refundId": str(row.id)},
        legs=legs,
    )
    await session.flush()
    if payer is not None:
        transfer = OutgoingTransfer(
            refund_id=row.id,
            chain_id=payment.chain_id,
            token_address=payment.token_address,
            to_address=payer,
            amount_units=to_units(value, payment.decimals or 0),
        )
        session.add(transfer)
        await session.flush()
        await payouts.enqueue_refund(session, transfer, actor_id)  # paid by the treasury signer (agent outbox)
    payment.refunded_amount += value
    target = S.REFUNDED if value == available else S.PARTIALLY_REFUNDED
    transition(session, payment, target, actor=Actor.ADMIN, actor_id=actor_id, reason=why)
    record(
        session,
        actor_id=actor_id,
        action="payment.refund",
        target_type="payment",
        target_id=payment.id,
        request_id=request_id,
        details={"amount": str(value), "reason": why, "refundId": str(row.id)},
    )
    return row, payment


async def _by_key(session: AsyncSession, payment_id: uuid.UUID, key: str) -> PaymentRefund | None:
    return (
        await session.execute(
            select(PaymentRefund).where(PaymentRefund.payment_id == payment_id, PaymentRefund.idempotency_key == key)
        )
    ).scalar_one_or_none()


def _same(existing: PaymentRefund, requested: Decimal | None, why: str) -> PaymentRefund:
    if (existing.requested_amount, existing.reason) != (requested, why):
        raise Conflict("idempotencyKey was already used for a different refund", reason="IDEMPOTENCY_KEY_REUSED")
    return existing


async def fail(
    session: AsyncSession, payment_id: uuid.UUID, reason: str, actor_id: uuid.UUID, request_id: str | None = None
) -> Payment:
    """Give up on a payment that cannot complete (e.g. the token was paused); nothing was credited yet."""
    why = _text(reason, "reason")
    payment = await get(session, payment_id, lock=True)
    transition(session, payment, S.FAILED, actor=Actor.ADMIN, actor_id=actor_id, reason=why)
    record(
        session,
        actor_id=actor_id,
        action="payment.fail",
        target_type="payment",
        target_id=payment.id,
        request_id=request_id,
        details={"reason": why},
    )
    return payment
