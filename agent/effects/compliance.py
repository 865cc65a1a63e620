"""Compliance operations (freeze/unfreeze, partial, pause/unpause) completed: nothing to change in the domain (the
indexer derives holdings.frozen / frozen_amount and tokens.paused from the events themselves); an audit row records
the outcome, so the requester's action and its result are both in the log."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from agent.handlers import register
from models.operations import ChainOperation
from resolvers.audit import record


async def on_confirmed(session: AsyncSession, op: ChainOperation) -> None:
    record(
        session,
        actor_id=op.created_by,
        action=f"{op.kind}.confirmed",
        target_type="chain_operation",
        target_id=str(op.id),
        details={
            "chainId": op.chain_id,
            "token": op.contract,
            "args": op.args,
            "txHash": op.mined_tx_hash or op.tx_hash,
        },
    )


async def on_failed(session: AsyncSession, op: ChainOperation, reason: str) -> None:
    record(
        session,
        actor_id=op.created_by,
        action=f"{op.kind}.failed",
        target_type="chain_operation",
        target_id=str(op.id),
        details={"chainId": op.chain_id, "token": op.contract, "args": op.args, "reason": reason[:500]},
    )


register("compliance.", on_confirmed=on_confirmed, on_failed=on_failed)
