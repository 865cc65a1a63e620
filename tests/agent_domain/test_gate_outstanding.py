"""The compliance gate counts only settlement instructions that are really outstanding: not finished AND whose
transfer is not yet in the indexed holdings (issue 10: an order for 85 of the 90 tokens a seller really holds was
REJECTED INSUFFICIENT_TOKEN_BALANCE because the stale instruction of a transfer already indexed counted again)."""

from __future__ import annotations

from sqlalchemy import delete

from models.operations import OperationState
from models.tokens import Holding, TokenTransfer
from models.trading import OrderStatus, Side
from resolvers.trading.orders import place_order
from tests.agent_domain.helpers import broadcast, complete, index_transfer, op_by_ref
from tests.trading.factories import make_market, make_trader
from tests.trading.test_orders_flow import limit
from tests.trading.test_settlement_failure import trade_of


async def sell(session, trader, m, qty: str):  # type: ignore[no-untyped-def]
    return (await place_order(session, trader.user_id, limit(m, Side.SELL, qty, "100.00"))).order


async def test_indexed_transfer_is_not_counted_twice(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, decimals=6)
    seller = await make_trader(session_factory, m, tokens="100")
    buyer = await make_trader(session_factory, m, cash="10000")
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "10", "5.00"))
    await place_order(session, seller.user_id, limit(m, Side.SELL, "10", "5.00"))
    _, instruction = await trade_of(session, seller.wallet)
    op = await op_by_ref(session, f"settlement:{instruction.id}")
    assert (op.kind, op.function, op.args) == (
        "settlement.transfer",
        "settlementTransfer",
        [seller.wallet, buyer.wallet, str(10 * 10**6)],
    )

    # sent, not indexed yet: the instruction holds 10 of the 100
    txh = await broadcast(session, op)
    assert (await sell(session, seller, m, "91")).reason == "INSUFFICIENT_TOKEN_BALANCE"
    # the indexer stored the transfer (not final): 90 held, nothing outstanding any more
    await index_transfer(session, m.chain_id, m.token_address, seller.wallet, buyer.wallet, 10 * 10**6, txh)
    assert (await sell(session, seller, m, "91")).reason == "INSUFFICIENT_TOKEN_BALANCE"
    placed = await sell(session, seller, m, "85")
    assert placed.status is OrderStatus.NEW, placed.reason
    # a reorg removes the transfer: the balance is back at 100 and the instruction counts again (100 - 10 - 85)
    await session.execute(delete(TokenTransfer).where(TokenTransfer.tx_hash == txh))
    holding = await session.get(Holding, (m.chain_id, m.token_address, seller.wallet))
    holding.balance = 100 * 10**6
    await session.flush()
    assert (await sell(session, seller, m, "6")).reason == "INSUFFICIENT_TOKEN_BALANCE"
    assert (await sell(session, seller, m, "5")).status is OrderStatus.NEW


async def test_replacement_hash_and_unrelated_transfers(session_factory, session):  # type: ignore[no-untyped-def]
    """The op's replacement (fee bump) landed: any of its hashes counts; a transfer of the seller's own (other tx)
    does not settle the instruction."""
    m = await make_market(session_factory, decimals=0)
    seller = await make_trader(session_factory, m, tokens="50")
    buyer = await make_trader(session_factory, m, cash="10000")
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "20", "5.00"))
    await place_order(session, seller.user_id, limit(m, Side.SELL, "20", "5.00"))
    _, instruction = await trade_of(session, seller.wallet)
    op = await op_by_ref(session, f"settlement:{instruction.id}")
    await broadcast(session, op)
    replacement = await broadcast(session, op)
    other = await broadcast(session, await op_by_ref(session, f"settlement:{instruction.id}"))
    # the seller moves 5 away by itself: 45 held, 20 still outstanding
    await index_transfer(session, m.chain_id, m.token_address, seller.wallet, buyer.wallet, 5, "0x" + "ab" * 32)
    assert (await sell(session, seller, m, "26")).reason == "INSUFFICIENT_TOKEN_BALANCE"
    await index_transfer(session, m.chain_id, m.token_address, seller.wallet, buyer.wallet, 20, replacement)
    assert other != replacement
    assert (await sell(session, seller, m, "25")).status is OrderStatus.NEW


async def test_finished_instruction_never_counts(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, decimals=0)
    seller = await make_trader(session_factory, m, tokens="30")
    buyer = await make_trader(session_factory, m, cash="10000")
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "30", "5.00"))
    await place_order(session, seller.user_id, limit(m, Side.SELL, "30", "5.00"))
    _, instruction = await trade_of(session, seller.wallet)
    op = await op_by_ref(session, f"settlement:{instruction.id}")
    await complete(session, op, confirmed=False, reason="sender balance too low")
    assert op.state is OperationState.FAILED
    assert (await sell(session, seller, m, "30")).status is OrderStatus.NEW
