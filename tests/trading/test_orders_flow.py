"""Placing orders through the resolvers: the book, trades, settlement (ledger and instructions), reservations."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from models.ledger import AccountKind, LedgerAccount
from models.trading import (
    InstructionStatus,
    OrderStatus,
    OrderType,
    SettlementInstruction,
    SettlementStatus,
    Side,
    Trade,
)
from resolvers import ledger
from resolvers.trading.orders import ClientOrderIdReused, OrderRequest, cancel_order, place_order
from resolvers.trading.settlement import record_transfer_result
from tests.trading.factories import make_market, make_trader


def limit(m, side, qty, price, **kw):  # type: ignore[no-untyped-def]
    return OrderRequest(m.market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price), **kw)


async def fees_balance(session, currency: str) -> Decimal:  # type: ignore[no-untyped-def]
    return (
        await session.execute(
            select(LedgerAccount.balance).where(
                LedgerAccount.owner_id.is_(None),
                LedgerAccount.kind == AccountKind.FEES,
                LedgerAccount.currency == currency,
            )
        )
    ).scalar_one_or_none() or Decimal(0)


async def test_cross_settles_cash_and_records_token_instruction(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=10, taker_bps=20)
    seller = await make_trader(session_factory, m, tokens="100")
    buyer = await make_trader(session_factory, m, cash="10000")

    ask = await place_order(session, seller.user_id, limit(m, Side.SELL, "10", "5.00"))
    assert ask.order.status is OrderStatus.NEW and ask.order.wallet_address == seller.wallet
    bid = await place_order(session, buyer.user_id, limit(m, Side.BUY, "4", "6.00"))
    assert bid.order.status is OrderStatus.FILLED and bid.order.filled_quantity == 4
    assert bid.order.reserved_cash == 0

    trade = (await session.execute(select(Trade).where(Trade.taker_order_id == bid.order.id))).scalar_one()
    assert trade.price == Decimal("5") and trade.quantity == 4  # the maker's price
    assert trade.settlement is SettlementStatus.PENDING  # cash moved; the token leg waits for the agent
    assert trade.taker_fee == Decimal("0.04") and trade.maker_fee == Decimal("0.02")
    (buyer_cash,) = await ledger.balances(session, buyer.user_id)
    assert buyer_cash.available == Decimal("10000") - Decimal("20.04") and buyer_cash.reserved == 0
    (seller_cash,) = await ledger.balances(session, seller.user_id)
    assert seller_cash.available == Decimal("19.98")
    assert await fees_balance(session, m.quote) == Decimal("0.06")
    assert (await ledger.total_by_currency(session))[m.quote] == 0

    instruction = (
        await session.execute(select(SettlementInstruction).where(SettlementInstruction.trade_id == trade.id))
    ).scalar_one()
    assert (instruction.chain_id, instruction.token_address) == (m.chain_id, m.token_address)
    assert (instruction.from_wallet, instruction.to_wallet) == (seller.wallet, buyer.wallet)
    assert instruction.amount == 4 * 10**m.decimals and instruction.status is InstructionStatus.PENDING

    assert (
        await record_transfer_result(session, instruction.id, confirmed=True, tx_hash="0x" + "ab" * 32)
        is SettlementStatus.SETTLED
    )
    await session.refresh(trade)
    await session.refresh(instruction)
    assert trade.settlement is SettlementStatus.SETTLED and instruction.status is InstructionStatus.CONFIRMED
    # a late duplicate report changes nothing
    assert await record_transfer_result(session, instruction.id, confirmed=False) is SettlementStatus.SETTLED


async def test_failed_transfer_marks_the_trade_failed(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    seller = await make_trader(session_factory, m, tokens="10")
    buyer = await make_trader(session_factory, m, cash="100")
    await place_order(session, seller.user_id, limit(m, Side.SELL, "1", "1.00"))
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "1", "1.00"))
    instruction = (
        await session.execute(select(SettlementInstruction).where(SettlementInstruction.from_wallet == seller.wallet))
    ).scalar_one()
    assert await record_transfer_result(session, instruction.id, confirmed=False) is SettlementStatus.FAILED
    trade = (await session.execute(select(Trade).where(Trade.id == instruction.trade_id))).scalar_one()
    await session.refresh(trade)
    assert trade.settlement is SettlementStatus.FAILED


async def test_resting_buy_reserves_and_cancel_releases(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=10, taker_bps=20)
    buyer = await make_trader(session_factory, m, cash="1000")
    placed = await place_order(session, buyer.user_id, limit(m, Side.BUY, "10", "2.50"))
    assert placed.order.status is OrderStatus.NEW
    assert placed.order.reserved_cash == Decimal("25.05")  # 25 + the larger fee (20 bps)
    assert placed.order.status is OrderStatus.NEW
    (cash,) = await ledger.balances(session, buyer.user_id)
    assert (cash.available, cash.reserved) == (Decimal("974.95"), Decimal("25.05"))
    canceled, events = await cancel_order(session, buyer.user_id, placed.order.id)
    assert canceled.status is OrderStatus.CANCELED and canceled.reason == "USER_CANCELED"
    (cash,) = await ledger.balances(session, buyer.user_id)
    assert (cash.available, cash.reserved) == (Decimal("1000"), Decimal("0"))
    assert [c for c, _ in events.messages][0].endswith(":book")


async def test_partial_fill_then_rest_and_maker_completion_releases_leftover(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=0, taker_bps=0)
    buyer = await make_trader(session_factory, m, cash="1000")
    seller = await make_trader(session_factory, m, tokens="50")
    bid = await place_order(session, buyer.user_id, limit(m, Side.BUY, "10", "3.00"))
    ask = await place_order(session, seller.user_id, limit(m, Side.SELL, "4", "2.00"))
    # the resting bid is the maker: trade at 3.00
    assert ask.order.status is OrderStatus.FILLED
    trades = (await session.execute(select(Trade).where(Trade.maker_order_id == bid.order.id))).scalars().all()
    assert [(t.price, t.quantity) for t in trades] == [(Decimal("3"), Decimal("4"))]
    ask2 = await place_order(session, seller.user_id, limit(m, Side.SELL, "20", "3.00"))
    assert ask2.order.status is OrderStatus.PARTIALLY_FILLED and ask2.order.filled_quantity == 6
    (cash,) = await ledger.balances(session, buyer.user_id)
    assert cash.reserved == 0 and cash.available == Decimal("970")


async def test_client_order_id_is_idempotent(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    buyer = await make_trader(session_factory, m, cash="1000")
    first = await place_order(session, buyer.user_id, limit(m, Side.BUY, "1", "1.00", client_order_id="abc"))
    again = await place_order(session, buyer.user_id, limit(m, Side.BUY, "1", "1.0", client_order_id="abc"))
    assert again.replayed and again.order.id == first.order.id and again.order.quantity == 1
    # the key reused for another order is not a retry: refused, nothing written (it used to answer the first order)
    for other in (
        limit(m, Side.BUY, "5", "1.00", client_order_id="abc"),
        limit(m, Side.BUY, "1", "2.00", client_order_id="abc"),
    ):
        with pytest.raises(ClientOrderIdReused) as refused:
            await place_order(session, buyer.user_id, other)
        assert refused.value.extensions["reason"] == "IDEMPOTENCY_KEY_REUSED"
    (cash,) = await ledger.balances(session, buyer.user_id)
    assert cash.reserved == first.order.reserved_cash
