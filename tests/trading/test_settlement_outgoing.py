"""`settlement_outgoing` (migration 0023), the per-wallet total of unfinished settlement instructions that the
compliance gate reads instead of summing them: after every kind of write to the instructions (trades, a set-based
confirmation, a failure, a direct update or delete) it equals the sum it replaces, wallet by wallet."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import delete, text, update

from models.trading import InstructionStatus, OrderStatus, SettlementInstruction, Side
from resolvers.trading.orders import place_order
from resolvers.trading.settlement import apply_transfer_result
from resolvers.trading.settlement_confirm import confirm_transfers
from tests.trading.factories import make_market, make_trader
from tests.trading.test_orders_flow import limit

_TOTALS = "SELECT chain_id, token_address, wallet, amount FROM settlement_outgoing WHERE amount <> 0"
_SUMS = """
SELECT chain_id, token_address, from_wallet, sum(amount) FROM settlement_instructions
WHERE status IN ('PENDING', 'SUBMITTED') GROUP BY chain_id, token_address, from_wallet"""


async def assert_totals_match(session) -> dict[str, int]:  # type: ignore[no-untyped-def]
    totals = {(r[0], r[1], r[2]): int(r[3]) for r in (await session.execute(text(_TOTALS))).all()}
    sums = {(r[0], r[1], r[2]): int(r[3]) for r in (await session.execute(text(_SUMS))).all()}
    assert totals == sums
    return {key[2]: amount for key, amount in totals.items()}


async def instructions_of(session, wallet: str) -> list[SettlementInstruction]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    rows = await session.execute(
        select(SettlementInstruction)
        .where(SettlementInstruction.from_wallet == wallet)
        .order_by(SettlementInstruction.amount.desc())
        .execution_options(populate_existing=True)
    )
    return list(rows.scalars())


async def test_totals_follow_every_write_to_the_instructions(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, decimals=0, maker_bps=0, taker_bps=0)
    a = await make_trader(session_factory, m, tokens="100")
    b = await make_trader(session_factory, m, tokens="100")
    buyer = await make_trader(session_factory, m, cash="100000")
    await place_order(session, a.user_id, limit(m, Side.SELL, "7", "5.00"))
    await place_order(session, b.user_id, limit(m, Side.SELL, "11", "5.00"))
    await place_order(session, a.user_id, limit(m, Side.SELL, "3", "5.00"))
    # one buy takes all three makers: one statement inserts three instructions from two wallets
    taken = await place_order(session, buyer.user_id, limit(m, Side.BUY, "21", "5.00"))
    assert taken.order.status is OrderStatus.FILLED
    assert await assert_totals_match(session) == {a.wallet: 10, b.wallet: 11}

    first_a, second_a = await instructions_of(session, a.wallet)  # 7, then 3
    (only_b,) = await instructions_of(session, b.wallet)
    await confirm_transfers(session, [(first_a.id, "0x" + "01" * 32)])  # the agent's set-based confirmation
    assert await assert_totals_match(session) == {a.wallet: 3, b.wallet: 11}
    await confirm_transfers(session, [(first_a.id, "0x" + "01" * 32)])  # a replay changes nothing
    assert await assert_totals_match(session) == {a.wallet: 3, b.wallet: 11}

    await apply_transfer_result(session, only_b.id, confirmed=False, reason="sender balance too low")
    await session.flush()
    assert await assert_totals_match(session) == {a.wallet: 3}

    # writes the application does not make keep it right too: an amount changed, an instruction moved, one deleted
    await session.execute(update(SettlementInstruction).where(SettlementInstruction.id == second_a.id).values(amount=4))
    assert await assert_totals_match(session) == {a.wallet: 4}
    await session.execute(
        update(SettlementInstruction)
        .where(SettlementInstruction.id == second_a.id)
        .values(from_wallet=b.wallet, status=InstructionStatus.SUBMITTED)
    )
    assert await assert_totals_match(session) == {b.wallet: 4}
    await session.execute(delete(SettlementInstruction).where(SettlementInstruction.id == second_a.id))
    assert await assert_totals_match(session) == {}


async def test_gate_reads_the_total(session_factory, session):  # type: ignore[no-untyped-def]
    """Sold tokens stay committed (the gate's total), and a failed transfer frees them again."""
    m = await make_market(session_factory, decimals=0, maker_bps=0, taker_bps=0)
    seller = await make_trader(session_factory, m, tokens="10")
    buyer = await make_trader(session_factory, m, cash="1000")
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "6", "5.00"))
    await place_order(session, seller.user_id, limit(m, Side.SELL, "6", "5.00"))
    refused = await place_order(session, seller.user_id, limit(m, Side.SELL, "5", "6.00"))
    assert refused.order.reason == "INSUFFICIENT_TOKEN_BALANCE"
    (instruction,) = await instructions_of(session, seller.wallet)
    await apply_transfer_result(session, instruction.id, confirmed=False, reason="token paused")
    await session.flush()
    placed = await place_order(session, seller.user_id, limit(m, Side.SELL, "10", "6.00"))
    assert placed.order.status is OrderStatus.NEW, placed.order.reason
    assert placed.order.quantity == Decimal(10)
