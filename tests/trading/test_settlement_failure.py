"""A trade whose token transfer failed: the trade is FAILED with a reason, its cash leg is reversed (what the seller
already spent is owed to the platform in RECEIVABLES), the seller's tokens are free again, open orders keep their
reservations, an audit row says what happened, and the ledger still sums to zero."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from core.errors import BadUserInput
from models.identity import AuditLog
from models.ledger import AccountKind, LedgerAccount
from models.trading import InstructionStatus, Order, OrderStatus, SettlementInstruction, SettlementStatus, Side, Trade
from resolvers import ledger
from resolvers.trading.orders import place_order
from resolvers.trading.settlement import record_transfer_result
from tests.trading.factories import make_market, make_trader
from tests.trading.test_orders_flow import limit


async def platform_balance(session, kind: AccountKind, currency: str) -> Decimal:  # type: ignore[no-untyped-def]
    return (
        await session.execute(
            select(LedgerAccount.balance).where(
                LedgerAccount.owner_id.is_(None), LedgerAccount.kind == kind, LedgerAccount.currency == currency
            )
        )
    ).scalar_one_or_none() or Decimal(0)


async def cash(session, user_id) -> tuple[Decimal, Decimal]:  # type: ignore[no-untyped-def]
    rows = await ledger.balances(session, user_id)
    return (rows[0].available, rows[0].reserved) if rows else (Decimal(0), Decimal(0))


async def open_reserved(session, user_id) -> Decimal:  # type: ignore[no-untyped-def]
    rows = (
        await session.execute(
            select(Order.reserved_cash).where(
                Order.user_id == user_id, Order.status.in_((OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED))
            )
        )
    ).scalars()
    return sum(rows, Decimal(0))


async def trade_of(session, seller_wallet: str) -> tuple[Trade, SettlementInstruction]:  # type: ignore[no-untyped-def]
    instruction = (
        await session.execute(select(SettlementInstruction).where(SettlementInstruction.from_wallet == seller_wallet))
    ).scalar_one()
    trade = (await session.execute(select(Trade).where(Trade.id == instruction.trade_id))).scalar_one()
    return trade, instruction


async def test_failed_transfer_reverses_cash_frees_tokens_and_audits(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=10, taker_bps=20)
    seller = await make_trader(session_factory, m, tokens="10")
    buyer = await make_trader(session_factory, m, cash="1000")
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "10", "5.00"))  # rests: reserves 50.10
    await place_order(session, seller.user_id, limit(m, Side.SELL, "4", "5.00"))  # 4 @ 5: buyer pays 20.02
    assert await cash(session, buyer.user_id) == (Decimal("949.90"), Decimal("30.08"))
    assert await cash(session, seller.user_id) == (Decimal("19.96"), 0)
    # the pending instruction holds 4 of the seller's 10 tokens: a sell of 10 is refused
    refused = await place_order(session, seller.user_id, limit(m, Side.SELL, "10", "100.00"))
    assert refused.order.reason == "INSUFFICIENT_TOKEN_BALANCE"

    trade, instruction = await trade_of(session, seller.wallet)
    assert (
        await record_transfer_result(
            session, instruction.id, confirmed=False, reason="transfer reverted: wallet frozen"
        )
        is SettlementStatus.FAILED
    )
    await session.refresh(trade)
    await session.refresh(instruction)
    assert (trade.settlement, trade.failure_reason) == (SettlementStatus.FAILED, "transfer reverted: wallet frozen")
    assert instruction.status is InstructionStatus.FAILED
    # the buyer has its payment back as free cash; its open bid keeps exactly what its 6 remaining need
    assert await cash(session, buyer.user_id) == (Decimal("969.92"), Decimal("30.08"))
    assert await open_reserved(session, buyer.user_id) == Decimal("30.08")
    assert await cash(session, seller.user_id) == (0, 0)
    assert await platform_balance(session, AccountKind.FEES, m.quote) == 0
    assert await platform_balance(session, AccountKind.RECEIVABLES, m.quote) == 0
    assert (await ledger.total_by_currency(session))[m.quote] == 0
    [audit] = (
        await session.execute(
            select(AuditLog).where(AuditLog.action == "trade.settlement_failed", AuditLog.target_id == str(trade.id))
        )
    ).scalars()
    assert audit.details["reason"] == "transfer reverted: wallet frozen"
    assert audit.details["refundedToBuyer"] == "20.02" and audit.details["owedBySeller"] == "0"
    # the tokens never left: all 10 are free again
    resting = await place_order(session, seller.user_id, limit(m, Side.SELL, "10", "100.00"))
    assert resting.order.status is OrderStatus.NEW

    # a repeated report (either way) changes nothing
    instruction_id = instruction.id
    assert await record_transfer_result(session, instruction_id, confirmed=False) is SettlementStatus.FAILED
    assert await record_transfer_result(session, instruction_id, confirmed=True) is SettlementStatus.FAILED
    assert await cash(session, buyer.user_id) == (Decimal("969.92"), Decimal("30.08"))


async def test_cash_the_seller_spent_is_owed_in_receivables(session_factory, session, gql, services):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=0, taker_bps=0)
    seller = await make_trader(session_factory, m, tokens="10")
    buyer = await make_trader(session_factory, m, cash="100")
    await place_order(session, seller.user_id, limit(m, Side.SELL, "4", "5.00"))
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "4", "5.00"))  # seller receives 20
    await place_order(session, seller.user_id, limit(m, Side.BUY, "3", "5.00"))  # rests: 15 of it reserved
    assert await cash(session, seller.user_id) == (Decimal("5"), Decimal("15"))

    _, instruction = await trade_of(session, seller.wallet)
    assert await record_transfer_result(session, instruction.id, confirmed=False) is SettlementStatus.FAILED
    assert await cash(session, buyer.user_id) == (Decimal("100"), 0)
    # the seller gives back its 5 of free cash; its open bid keeps its 15; the other 15 are owed
    assert await cash(session, seller.user_id) == (0, Decimal("15"))
    assert await open_reserved(session, seller.user_id) == Decimal("15")
    assert await platform_balance(session, AccountKind.RECEIVABLES, m.quote) == Decimal("-15")
    assert (await ledger.total_by_currency(session))[m.quote] == 0
    mine = await gql(
        "{ myTrades { edges { node { side settlement settlementFailureReason } } } }",
        token=services.keyring.issue(seller.user_id, ["INVESTOR"])[0],
    )
    assert [e["node"] for e in mine["data"]["myTrades"]["edges"]] == [
        {"side": "SELL", "settlement": "FAILED", "settlementFailureReason": "TRANSFER_FAILED"}
    ]


async def test_bad_reason_is_refused_and_changes_nothing(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    seller = await make_trader(session_factory, m, tokens="10")
    buyer = await make_trader(session_factory, m, cash="100")
    await place_order(session, seller.user_id, limit(m, Side.SELL, "1", "1.00"))
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "1", "1.00"))
    trade, instruction = await trade_of(session, seller.wallet)
    for reason in ("x" * 81, "   "):
        with pytest.raises(BadUserInput):
            await record_transfer_result(session, instruction.id, confirmed=False, reason=reason)
    await session.refresh(trade)
    await session.refresh(instruction)
    assert trade.settlement is SettlementStatus.PENDING and instruction.status is InstructionStatus.PENDING
