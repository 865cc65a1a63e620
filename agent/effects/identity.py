"""Identity registry operations ("identity.register" / "identity.delete" / "identity.update_country") completed: re-check the key's desired
state (resolvers/identity/registry_sync.py) under the same lock as the decisions, so a KYC change or an unlink that
committed while the operation was in flight gets its own operation now. A FAILED operation is not re-enqueued in the
same direction (a permanent revert would loop); the periodic reconcile or an operator's retryOperation takes it up.
Each completion leaves an audit row; the wallet's owner gets a live update (`mySettlements` carries trades only, so
identity changes are read through `Wallet.verifications`)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from agent.handlers import register
from models.operations import ChainOperation
from resolvers.audit import record
from resolvers.identity.registry_sync import parse_ref, sync_one

log = logging.getLogger("rwa.agent.effects.identity")


async def on_confirmed(session: AsyncSession, op: ChainOperation) -> None:
    chain_id, registry, wallet, _ = parse_ref(op.business_ref)
    record(
        session,
        actor_id=op.created_by,
        action=f"{op.kind}.confirmed",
        target_type="wallet",
        target_id=wallet,
        details={
            "chainId": chain_id,
            "registry": registry,
            "operation": str(op.id),
            "txHash": op.mined_tx_hash or op.tx_hash,
        },
    )
    await sync_one(session, chain_id, registry, wallet, completed=op)


async def on_failed(session: AsyncSession, op: ChainOperation, reason: str) -> None:
    chain_id, registry, wallet, _ = parse_ref(op.business_ref)
    log.warning("%s of %s in %s on chain %s failed: %s", op.kind, wallet, registry, chain_id, reason)
    record(
        session,
        actor_id=op.created_by,
        action=f"{op.kind}.failed",
        target_type="wallet",
        target_id=wallet,
        details={"chainId": chain_id, "registry": registry, "operation": str(op.id), "reason": reason[:500]},
    )
    await sync_one(session, chain_id, registry, wallet, completed=op, failed=True)


register("identity.", on_confirmed=on_confirmed, on_failed=on_failed)
