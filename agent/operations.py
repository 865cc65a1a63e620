"""What operators do to operations (ADMIN/COMPLIANCE through GraphQL, or the CLI): list, retry, cancel.

Plain functions over a session (the caller commits); each leaves an audit row.

- `retry`: a FAILED or CANCELED operation goes back to PENDING (new nonce, new estimation; the hashes it had stay
  in `tx_hashes`), and a PENDING one waiting out a backoff is retried now. Refused (CONFLICT COMPENSATED) for kinds
  whose failure handler already compensated the decision (a FAILED settlement reversed the trade's cash, a FAILED
  payout gave the cash back): sending them now would act twice; a new decision is needed instead.
  A failed or canceled batch (agent/batches.py) is refused too: its members were already sent alone.
- `cancel`: PENDING (nothing signed): the operation becomes CANCELED and the kind's failure handler runs in the same
  transaction (a canceled settlement FAILS its trade and reverses the cash; a canceled payout gives the cash back),
  exactly as a revert would. SIGNED or BROADCAST (e.g. a sweep the node refuses for lack of gas, holding its
  sender's nonce): the signed transaction may already sit in a node's pool, so the nonce cannot simply be given to
  the next operation; the op becomes REPLACED, its sender's agent fills the nonce with a 0-value self-transfer, and
  the op is CANCELED (and compensated, as above) only when that nonce is final without any of the op's own
  transactions, or back on its normal path if one of them wins (agent/cancels.py). MINED, BATCHED, REPLACED and
  final operations: CONFLICT INVALID_STATE.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent import handlers
from agent.batches import PREFIX as BATCH_PREFIX
from core.errors import BadUserInput, Conflict, NotFound
from models.identity import AuditLog
from models.operations import ChainOperation, OperationState

S = OperationState
# failure handlers of these kinds compensate the decision: never re-send them
COMPENSATED_KINDS = ("settlement.", "payout.", "issuance.")
MAX_REASON = 500
_WHY_NOT = {
    S.MINED: "its transaction is mined; only a reorg could remove it",
    S.REPLACED: "its cancel is already under way",
    S.BATCHED: "it rides in a batch operation: cancel the batch",
    S.SIGNED: "it holds no nonce of a sender to fill",
    S.BROADCAST: "it holds no nonce of a sender to fill",
}


@dataclass(frozen=True)
class OperationFilter:
    states: list[OperationState] | None = None
    kind: str | None = None  # exact kind, or a prefix ending with "." (e.g. "identity.")
    chain_id: int | None = None
    business_ref: str | None = None


def filtered(f: OperationFilter) -> Select:
    stmt = select(ChainOperation)
    if f.states:
        stmt = stmt.where(ChainOperation.state.in_(f.states))
    if f.kind:
        kind = f.kind.strip()
        if not 1 <= len(kind) <= 40:
            raise BadUserInput("kind must have 1 to 40 characters", field="kind")
        stmt = stmt.where(
            ChainOperation.kind.startswith(kind, autoescape=True) if kind.endswith(".") else ChainOperation.kind == kind
        )
    if f.chain_id is not None:
        stmt = stmt.where(ChainOperation.chain_id == f.chain_id)
    if f.business_ref:
        stmt = stmt.where(ChainOperation.business_ref == f.business_ref)
    return stmt


async def _locked(session: AsyncSession, op_id: uuid.UUID) -> ChainOperation:
    op = (
        await session.execute(
            select(ChainOperation)
            .where(ChainOperation.id == op_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if op is None:
        raise NotFound("operation not found", field="id")
    return op


def _audit(
    session: AsyncSession,
    actor_id: uuid.UUID | None,
    action: str,
    op: ChainOperation,
    request_id: str | None,
    **details: object,
) -> None:
    session.add(
        AuditLog(
            actor_id=actor_id,
            action=action,
            target_type="chain_operation",
            target_id=str(op.id),
            request_id=request_id,
            details={"kind": op.kind, "businessRef": op.business_ref, "chainId": op.chain_id, **details},
        )
    )


async def retry(
    session: AsyncSession, op_id: uuid.UUID, *, actor_id: uuid.UUID | None = None, request_id: str | None = None
) -> ChainOperation:
    op = await _locked(session, op_id)
    previous = op.state
    if previous in (S.FAILED, S.CANCELED):
        if op.kind.startswith(BATCH_PREFIX):
            raise Conflict(
                f"a {previous.value} batch operation's members were sent alone; it cannot be sent again",
                reason="COMPENSATED",
            )
        if op.kind.startswith(COMPENSATED_KINDS):
            raise Conflict(
                f"a {previous.value} {op.kind} operation was compensated; it cannot be sent again", reason="COMPENSATED"
            )
        op.state, op.nonce, op.raw_tx, op.tx_hash, op.sender = S.PENDING, None, None, None, None
        op.mined_block = op.mined_block_hash = op.mined_tx_hash = op.mined_status = None
        op.revert_reason = None
    elif previous is not S.PENDING:
        raise Conflict(
            f"a {previous.value} operation is being handled by the agent; only PENDING, FAILED or "
            "CANCELED operations can be retried",
            reason="INVALID_STATE",
        )
    op.next_attempt_at, op.last_error = None, f"retried by an operator (was {previous.value})"
    op.updated_at = datetime.now(UTC)  # set here: an expired server-side value cannot load after commit
    _audit(session, actor_id, "operation.retry", op, request_id, **{"from": previous.value})
    await session.flush()
    return op


async def cancel(
    session: AsyncSession,
    op_id: uuid.UUID,
    reason: str,
    *,
    actor_id: uuid.UUID | None = None,
    request_id: str | None = None,
) -> ChainOperation:
    why = " ".join((reason or "").split())
    if not 1 <= len(why) <= MAX_REASON:
        raise BadUserInput(f"reason must have 1 to {MAX_REASON} characters", field="reason")
    op = await _locked(session, op_id)
    if op.state in (S.SIGNED, S.BROADCAST) and op.nonce is not None and op.sender is not None:
        # signed: it may sit in a node's pool, so only a transaction at its nonce can make sure it never lands
        # (agent/cancels.py); nothing is compensated until that one is final
        previous = op.state
        op.state, op.revert_reason = S.REPLACED, f"canceled: {why}"
        op.last_error = f"cancel requested by an operator: a 0-value transaction of the sender fills nonce {op.nonce}"
        op.updated_at = datetime.now(UTC)
        _audit(
            session,
            actor_id,
            "operation.cancel",
            op,
            request_id,
            reason=why,
            nonce=op.nonce,
            **{"from": previous.value},
        )
        await session.flush()
        return op
    if op.state is not S.PENDING:
        raise Conflict(
            f"a {op.state.value} operation cannot be canceled ({_WHY_NOT.get(op.state, 'it is final')})",
            reason="INVALID_STATE",
        )
    op.state, op.revert_reason = S.CANCELED, f"canceled: {why}"
    op.last_error = "canceled by an operator"
    op.updated_at = datetime.now(UTC)
    handlers.load_effects()  # the API process has not loaded them (the executor does at start)
    await handlers.run_failed(session, op, f"canceled: {why}")
    _audit(session, actor_id, "operation.cancel", op, request_id, reason=why, **{"from": S.PENDING.value})
    await session.flush()
    return op
