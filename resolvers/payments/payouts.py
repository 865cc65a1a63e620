"""Stablecoin leaving the treasury: refund payouts (op kind "payout.refund", business_ref "refund:<refund id>") and
their completion. A refund books its ledger movement when decided (resolvers/payments/refunds.py) and queues the
transfer (Stablecoin.transfer(payer, units), treasury signer) in the same transaction; the outgoing transfer row
follows the operation: PENDING -> COMPLETED (the Transfer indexed and final; tx hash recorded) | FAILED, and a failed
payout is compensated: the refund's ledger movement is reversed (same accounts, opposite amounts), the payment's
refunded amount goes back down and its state returns (REFUNDED/PARTIALLY_REFUNDED -> PARTIALLY_REFUNDED or the state
it had before its first refund), with a payment_transitions row and a notification.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.outbox import enqueue
from models.ledger import AccountKind
from models.operations import ChainOperation
from models.payments import OutgoingTransfer, Payment, PaymentRefund, PaymentState, PaymentTransition
from resolvers import ledger
from resolvers.audit import record
from resolvers.payments.states import Actor, transition
from resolvers.raw_sql import pg

REFUND_KIND = "payout.refund"
S = PaymentState


def refund_ref(refund_id: uuid.UUID) -> str:
    return f"refund:{refund_id}"


async def payout_tx_hash(session: AsyncSession, transfer: OutgoingTransfer | None) -> str | None:
    """A refund payout's transaction hash: the transfer's, recorded when it completes or fails; while PENDING, its
    operation's from the first broadcast (the one that landed once mined)."""
    if transfer is None or transfer.tx_hash is not None or transfer.state != "PENDING":
        return None if transfer is None else transfer.tx_hash
    found: str | None = await (await pg(session)).fetchval(
        "SELECT coalesce(mined_tx_hash, tx_hash) FROM chain_operations WHERE business_ref = $1",
        refund_ref(transfer.refund_id),
    )
    return found


async def enqueue_refund(
    session: AsyncSession, transfer: OutgoingTransfer, actor_id: uuid.UUID | None
) -> ChainOperation:
    return await enqueue(
        session,
        kind=REFUND_KIND,
        chain_id=transfer.chain_id,
        contract=transfer.token_address,
        abi_name="Stablecoin",
        function="transfer",
        args=[transfer.to_address, int(transfer.amount_units)],
        business_ref=refund_ref(transfer.refund_id),
        signer="treasury",
        actor_id=actor_id,
    )


_ENTRIES = """
SELECT a.owner_id, a.kind::text AS kind, e.amount FROM ledger_transactions t
JOIN ledger_entries e ON e.transaction_id = t.id JOIN ledger_accounts a ON a.id = e.account_id
WHERE t.reference = $1 ORDER BY e.id"""


async def reverse_movement(
    session: AsyncSession, reference: str, *, kind: str, new_reference: str, currency: str, details: dict
) -> bool:
    """Post the exact opposite of the ledger transaction `reference` (idempotent per `new_reference`)."""
    rows = await (await pg(session)).fetch(_ENTRIES, reference)
    legs: list = []
    for r in rows:
        ref = (
            ledger.UserAccount(r["owner_id"], AccountKind(r["kind"]))
            if r["owner_id"] is not None
            else ledger.Platform(AccountKind(r["kind"]))
        )
        legs.append((ref, -Decimal(r["amount"])))
    if not legs:
        return False
    return await ledger.post(session, kind=kind, reference=new_reference, currency=currency, legs=legs, details=details)


async def _state_before_refunds(session: AsyncSession, payment_id: uuid.UUID) -> PaymentState:
    first = (
        await session.execute(
            select(PaymentTransition.from_state)
            .where(
                PaymentTransition.payment_id == payment_id,
                PaymentTransition.to_state.in_((S.REFUNDED.value, S.PARTIALLY_REFUNDED.value)),
            )
            .order_by(PaymentTransition.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    return PaymentState(first) if first else S.CONFIRMED


async def refund_completed(session: AsyncSession, op: ChainOperation, *, confirmed: bool, reason: str = "") -> None:
    """The refund's payout completed (see the module docstring). Idempotent: a finished transfer changes nothing."""
    refund_id = uuid.UUID(op.business_ref.removeprefix("refund:"))
    transfer = (
        await session.execute(select(OutgoingTransfer).where(OutgoingTransfer.refund_id == refund_id).with_for_update())
    ).scalar_one_or_none()
    if transfer is None or transfer.state in ("COMPLETED", "FAILED"):
        return
    transfer.tx_hash = op.mined_tx_hash or op.tx_hash
    if confirmed:
        transfer.state = "COMPLETED"
        record(
            session,
            actor_id=None,
            action="payment.refund_paid",
            target_type="payment_refund",
            target_id=refund_id,
            details={"operation": str(op.id), "txHash": transfer.tx_hash},
        )
        return
    transfer.state = "FAILED"
    refund = (await session.execute(select(PaymentRefund).where(PaymentRefund.id == refund_id))).scalar_one()
    payment = (
        await session.execute(select(Payment).where(Payment.id == refund.payment_id).with_for_update())
    ).scalar_one()
    await reverse_movement(
        session,
        f"payment:{payment.id}:refund:{refund_id}",
        kind="REFUND_REVERSAL",
        new_reference=f"payment:{payment.id}:refund:{refund_id}:reverse",
        currency=payment.currency,
        details={"paymentId": str(payment.id), "refundId": str(refund_id), "reason": reason[:200]},
    )
    payment.refunded_amount -= refund.amount
    target = S.PARTIALLY_REFUNDED if payment.refunded_amount > 0 else await _state_before_refunds(session, payment.id)
    if target is not payment.state:
        transition(session, payment, target, actor=Actor.SYSTEM, reason=f"refund payout failed: {reason}"[:500])
    record(
        session,
        actor_id=None,
        action="payment.refund_failed",
        target_type="payment_refund",
        target_id=refund_id,
        details={
            "operation": str(op.id),
            "reason": reason[:500],
            "amount": str(refund.amount),
            "paymentId": str(payment.id),
        },
    )
