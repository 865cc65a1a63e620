"""Compliance operations (freeze/unfreeze, partial, pause/unpause) completed: the indexer derives holdings.frozen /
frozen_amount and tokens.paused from the events themselves; an audit row records the outcome, so the requester's
action and its result are both in the log. A whole-wallet freeze also cancels the wallet's open orders in the token's
markets, a partial freeze its open sells of the token that its unfrozen balance no longer covers (reason
WALLET_FROZEN, reservations released, book and order events published after the commit)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from agent.effects import live
from agent.handlers import register
from models.operations import ChainOperation
from resolvers.audit import record
from resolvers.trading.cancel import cancel_unbacked_sells, cancel_wallet_orders


async def on_confirmed(session: AsyncSession, op: ChainOperation) -> None:
    if op.kind == "compliance.freeze" and len(op.args) == 2 and op.args[1] is True:
        # a frozen wallet can neither send nor receive the token: its open orders in the token's markets could only
        # trade to fail at settlement, so they leave the books with this confirmation (events after its commit)
        events = await cancel_wallet_orders(session, op.chain_id, op.contract, str(op.args[0]), reason="WALLET_FROZEN")
        for channel, event in events.messages:
            live.queue(session, channel, event)
    elif op.kind == "compliance.freeze_partial" and len(op.args) == 2:
        # frozen tokens cannot be sent: an open sell that the rest of the balance no longer covers could only trade
        # to fail at settlement (the indexer stored the TokensFrozen event, so holdings.frozen_amount includes it)
        events = await cancel_unbacked_sells(session, op.chain_id, op.contract, str(op.args[0]), reason="WALLET_FROZEN")
        for channel, event in events.messages:
            live.queue(session, channel, event)
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
