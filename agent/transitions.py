"""The terminal moves of an operation, each with its domain handler in the same transaction (agent.handlers).

`confirm` and `fail` are called inside the caller's transaction with the op row locked; the handler's effect and the
op's state commit together, exactly once (the state check makes a second call a no-op).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from agent import handlers, metrics
from models.operations import ChainOperation, OperationState

S = OperationState


async def confirm(session: AsyncSession, op: ChainOperation, block: int) -> bool:
    if op.state is S.CONFIRMED:
        return False
    op.state, op.confirmed_block, op.confirmed_at, op.last_error = S.CONFIRMED, block, datetime.now(UTC), None
    await handlers.run_confirmed(session, op)
    metrics.TRANSITIONS.labels(str(op.chain_id), "CONFIRMED").inc()
    if op.created_at is not None:
        metrics.CONFIRM_LATENCY.labels(str(op.chain_id)).observe((op.confirmed_at - op.created_at).total_seconds())
    return True


async def confirm_many(session: AsyncSession, ops: list[ChainOperation]) -> int:
    """`confirm` for each op at its mined block, with the kinds' handlers set-based (handlers.run_confirmed_many).
    Returns how many changed."""
    now = datetime.now(UTC)
    changed = [op for op in ops if op.state is not S.CONFIRMED]
    for op in changed:
        op.state, op.confirmed_block, op.confirmed_at, op.last_error = S.CONFIRMED, op.mined_block, now, None
    await handlers.run_confirmed_many(session, changed)
    for op in changed:
        metrics.TRANSITIONS.labels(str(op.chain_id), "CONFIRMED").inc()
        if op.created_at is not None:
            metrics.CONFIRM_LATENCY.labels(str(op.chain_id)).observe((now - op.created_at).total_seconds())
    return len(changed)


async def fail(session: AsyncSession, op: ChainOperation, reason: str, *, where: str) -> bool:
    """FAILED with `reason` (reverted at estimation or when mined); the handler compensates."""
    if op.state in (S.CONFIRMED, S.FAILED, S.CANCELED):
        return False
    op.state, op.revert_reason = S.FAILED, reason[:2000]
    op.last_error = f"reverted at {where}"
    await handlers.run_failed(session, op, reason)
    return True
