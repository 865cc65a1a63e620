"""Trade settlement: a "settlement.transfer" operation (SecurityToken.settlementTransfer seller -> buyer) completed.

CONFIRMED (the Transfer is indexed at or below the finalized block): the instruction CONFIRMED, the trade SETTLED.
FAILED (reverted at estimation or when mined: seller no longer holds the tokens, token paused, a wallet frozen,
receiver no longer verified; or canceled before broadcast): the trade FAILED with the reason, its cash reversed
(settlement._reverse_cash).
Both go through resolvers.trading.settlement.apply_transfer_result in the executor's transaction (no commit here);
the buyer and the seller get a live update (`mySettlements`) once it commits. The members of a confirmed batch
(agent/batches.py) are confirmed together, set-based (resolvers.trading.settlement_confirm), with the same effect.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.effects import live
from agent.handlers import register
from models.operations import ChainOperation
from models.trading import SettlementInstruction, SettlementStatus, Trade
from resolvers.trading.settlement import TRANSFER_KIND, apply_transfer_result, failure_reason, instruction_of
from resolvers.trading.settlement_confirm import confirm_transfers


def channel(user_id: object) -> str:
    return f"user:{user_id}:settlements"


async def _announce(session: AsyncSession, op: ChainOperation, instruction_id: object) -> None:
    trade = (
        await session.execute(
            select(Trade)
            .join(SettlementInstruction, SettlementInstruction.trade_id == Trade.id)
            .where(SettlementInstruction.id == instruction_id)
        )
    ).scalar_one()
    event = {
        "tradeId": str(trade.id),
        "marketId": str(trade.market_id),
        "settlement": trade.settlement.value,
        "failureReason": trade.failure_reason,
        "txHash": op.mined_tx_hash or op.tx_hash,
        "blockNumber": op.mined_block,
        "operationId": str(op.id),
    }
    for user in {trade.buyer_id, trade.seller_id}:
        live.queue(session, channel(user), event)


async def on_confirmed(session: AsyncSession, op: ChainOperation) -> None:
    instruction_id = instruction_of(op.business_ref)
    _, changed = await apply_transfer_result(
        session, instruction_id, confirmed=True, tx_hash=op.mined_tx_hash or op.tx_hash
    )
    if changed:
        await _announce(session, op, instruction_id)


async def on_confirmed_many(session: AsyncSession, ops: list[ChainOperation]) -> None:
    by_instruction = {instruction_of(op.business_ref): op for op in ops}
    settled = await confirm_transfers(
        session, [(i, op.mined_tx_hash or op.tx_hash) for i, op in by_instruction.items()]
    )
    for row in settled:
        op = by_instruction[row.instruction_id]
        event = {
            "tradeId": str(row.trade_id),
            "marketId": str(row.market_id),
            "settlement": SettlementStatus.SETTLED.value,
            "failureReason": None,
            "txHash": op.mined_tx_hash or op.tx_hash,
            "blockNumber": op.mined_block,
            "operationId": str(op.id),
        }
        for user in {row.buyer_id, row.seller_id}:
            live.queue(session, channel(user), event)


async def on_failed(session: AsyncSession, op: ChainOperation, reason: str) -> None:
    instruction_id = instruction_of(op.business_ref)
    status, changed = await apply_transfer_result(
        session,
        instruction_id,
        confirmed=False,
        tx_hash=op.mined_tx_hash or op.tx_hash,
        reason=failure_reason(reason),
        actor_id=op.created_by,
    )
    if changed:
        assert status is SettlementStatus.FAILED
        await _announce(session, op, instruction_id)


register(TRANSFER_KIND, on_confirmed=on_confirmed, on_failed=on_failed, on_confirmed_many=on_confirmed_many)
