"""Settlement operations: one per instruction, enqueued in the matching transaction; the completion handlers make
the trade SETTLED (confirmed) or FAILED with the revert reason and its cash reversed (failed), exactly once."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from models.identity import AuditLog
from models.operations import ChainOperation
from models.trading import InstructionStatus, SettlementStatus, Side
from resolvers import ledger
from resolvers.trading.orders import place_order
from tests.agent_domain.helpers import broadcast, complete, op_by_ref
from tests.trading.factories import make_market, make_trader
from tests.trading.test_orders_flow import limit
from tests.trading.test_settlement_failure import cash, trade_of


async def _trade(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=10, taker_bps=20)
    seller = await make_trader(session_factory, m, tokens="10")
    buyer = await make_trader(session_factory, m, cash="1000")
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "4", "5.00"))
    await place_order(session, seller.user_id, limit(m, Side.SELL, "4", "5.00"))
    trade, instruction = await trade_of(session, seller.wallet)
    return m, seller, buyer, trade, instruction


async def test_one_operation_per_instruction_in_the_matching_transaction(session_factory, session):  # type: ignore[no-untyped-def]
    m, seller, buyer, trade, instruction = await _trade(session_factory, session)
    op = await op_by_ref(session, f"settlement:{instruction.id}")
    assert (op.chain_id, op.contract, op.abi_name, op.signer) == (m.chain_id, m.token_address, "SecurityToken", "agent")
    assert op.args == [seller.wallet, buyer.wallet, str(4 * 10**6)]
    n = await session.scalar(
        select(func.count()).select_from(ChainOperation).where(ChainOperation.business_ref.like("settlement:%"))
    )
    assert n == 1


async def test_confirmed_settles_once(session_factory, session):  # type: ignore[no-untyped-def]
    _, _, _, trade, instruction = await _trade(session_factory, session)
    op = await op_by_ref(session, f"settlement:{instruction.id}")
    txh = await broadcast(session, op)
    op.mined_tx_hash, op.mined_block = txh, 42
    await complete(session, op, confirmed=True)
    await session.refresh(trade)
    await session.refresh(instruction)
    assert trade.settlement is SettlementStatus.SETTLED and trade.failure_reason is None
    assert instruction.status is InstructionStatus.CONFIRMED and instruction.tx_hash == txh
    # a replayed completion changes nothing
    await complete(session, op, confirmed=False, reason="late failure")
    await session.refresh(trade)
    assert trade.settlement is SettlementStatus.SETTLED
    assert (
        await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.action == "trade.settled", AuditLog.target_id == str(trade.id))
        )
        == 1
    )


async def test_revert_fails_the_trade_and_reverses_cash(session_factory, session):  # type: ignore[no-untyped-def]
    m, seller, buyer, trade, instruction = await _trade(session_factory, session)
    op = await op_by_ref(session, f"settlement:{instruction.id}")
    reason = "execution reverted: identity is not verified " + "x" * 200  # longer than a failure_reason holds
    await complete(session, op, confirmed=False, reason=reason)
    await session.refresh(trade)
    assert trade.settlement is SettlementStatus.FAILED
    assert trade.failure_reason.startswith("execution reverted: identity is not verified")
    assert len(trade.failure_reason) <= 80
    assert await cash(session, buyer.user_id) == (Decimal("1000"), 0)
    assert await cash(session, seller.user_id) == (0, 0)
    assert (await ledger.total_by_currency(session))[m.quote] == 0
    [audit] = (
        await session.execute(
            select(AuditLog).where(AuditLog.action == "trade.settlement_failed", AuditLog.target_id == str(trade.id))
        )
    ).scalars()
    assert audit.details["instruction"] == str(instruction.id)


async def test_inlined_operation_is_what_enqueue_writes(session_factory, session):  # type: ignore[no-untyped-def]
    """settle() inlines the operation insert (hot path): the row must be exactly agent.outbox.enqueue's."""
    from agent.outbox import enqueue

    m, seller, buyer, trade, instruction = await _trade(session_factory, session)
    inlined = await op_by_ref(session, f"settlement:{instruction.id}")
    twin = await enqueue(
        session,
        kind="settlement.transfer",
        chain_id=m.chain_id,
        contract=m.token_address,
        abi_name="SecurityToken",
        function="settlementTransfer",
        args=[seller.wallet, buyer.wallet, int(instruction.amount)],
        business_ref="twin:1",
    )
    columns = (
        "kind",
        "chain_id",
        "contract",
        "abi_name",
        "function",
        "args",
        "value",
        "signer",
        "state",
        "attempts",
        "sender",
        "nonce",
        "raw_tx",
        "tx_hash",
        "tx_hashes",
        "created_by",
        "next_attempt_at",
    )
    assert {c: getattr(inlined, c) for c in columns} == {c: getattr(twin, c) for c in columns}
