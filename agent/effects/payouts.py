"""Treasury payouts completed: "payout.refund" (resolvers/payments/payouts.py: the outgoing transfer COMPLETED, or
FAILED and the refund undone) and "payout.withdrawal" (resolvers/payments/withdrawals.py: COMPLETED with the cash
final in WITHDRAWALS, or FAILED with it given back). The withdrawal's owner hears the change (`myWithdrawals`) once
the executor's transaction commits; a refund's payment publishes through the payments notifier's own channel."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from agent.effects import live
from agent.handlers import register
from models.operations import ChainOperation
from resolvers.payments import notify, payouts, withdrawals


def channel(user_id: object) -> str:
    return f"user:{user_id}:withdrawals"


async def _refund(session: AsyncSession, op: ChainOperation, confirmed: bool, reason: str = "") -> None:
    await payouts.refund_completed(session, op, confirmed=confirmed, reason=reason)
    for event in notify.pending(session):  # a payment transition (failed payout): its subscribers hear it
        live.queue(session, notify.channel(event["id"]), event)
    await notify.write_outbox(session)  # its webhook deliveries, in the same transaction
    notify.discard(session)


async def _withdrawal(session: AsyncSession, op: ChainOperation, confirmed: bool, reason: str = "") -> None:
    w = await withdrawals.payout_completed(session, op, confirmed=confirmed, reason=reason)
    if w is not None:
        live.queue(session, channel(w.user_id), withdrawals.event_of(w))


async def on_refund_confirmed(session: AsyncSession, op: ChainOperation) -> None:
    await _refund(session, op, True)


async def on_refund_failed(session: AsyncSession, op: ChainOperation, reason: str) -> None:
    await _refund(session, op, False, reason)


async def on_withdrawal_confirmed(session: AsyncSession, op: ChainOperation) -> None:
    await _withdrawal(session, op, True)


async def on_withdrawal_failed(session: AsyncSession, op: ChainOperation, reason: str) -> None:
    await _withdrawal(session, op, False, reason)


register(payouts.REFUND_KIND, on_confirmed=on_refund_confirmed, on_failed=on_refund_failed)
register(withdrawals.KIND, on_confirmed=on_withdrawal_confirmed, on_failed=on_withdrawal_failed)


async def _sweep_done(session: AsyncSession, op: ChainOperation) -> None:
    # the holdings move with the indexed Transfer itself; the log keeps who moved what where
    from resolvers.audit import record

    record(
        session,
        actor_id=None,
        action=f"{op.kind}.confirmed",
        target_type="chain_operation",
        target_id=str(op.id),
        details={
            "chainId": op.chain_id,
            "to": op.contract,
            "args": op.args,
            "value": str(op.value),
            "txHash": op.mined_tx_hash or op.tx_hash,
        },
    )


async def _sweep_failed(session: AsyncSession, op: ChainOperation, reason: str) -> None:
    from resolvers.audit import record

    record(
        session,
        actor_id=None,
        action=f"{op.kind}.failed",
        target_type="chain_operation",
        target_id=str(op.id),
        details={"chainId": op.chain_id, "to": op.contract, "reason": reason[:500]},
    )  # the next pass retries


register("sweep.", on_confirmed=_sweep_done, on_failed=_sweep_failed)
register("gas.", on_confirmed=_sweep_done, on_failed=_sweep_failed)
