"""The compliance gate: every refusal is a stored REJECTED order with its reason, and changes no balance."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import update

from models.identity import KycStatus
from models.tokens import Token
from models.trading import Market, MarketStatus, OrderStatus, OrderType, Side
from resolvers import ledger
from resolvers.trading.orders import OrderRequest, place_order
from tests.trading.factories import make_market, make_trader


def limit(m, side, qty="10", price="1.00"):  # type: ignore[no-untyped-def]
    return OrderRequest(m.market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price))


async def rejected(session, user_id, req) -> str:  # type: ignore[no-untyped-def]
    placed = await place_order(session, user_id, req)
    assert placed.order.status is OrderStatus.REJECTED, placed.order
    assert placed.order.reserved_cash == 0
    return placed.order.reason  # type: ignore[return-value]


@pytest.mark.parametrize(
    "kyc",
    [None, KycStatus.NOT_STARTED, KycStatus.PENDING_REVIEW, KycStatus.REJECTED, KycStatus.SUSPENDED, KycStatus.EXPIRED],
)
async def test_kyc_not_approved(session_factory, session, kyc):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m, cash="100", tokens="100", kyc=kyc)
    assert await rejected(session, t.user_id, limit(m, Side.BUY)) == "KYC_NOT_APPROVED"


async def test_no_linked_wallet(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m, cash="100", wallet=False)
    assert await rejected(session, t.user_id, limit(m, Side.BUY)) == "NO_LINKED_WALLET"


async def test_wallet_not_registered_in_the_identity_registry(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m, cash="100", tokens="100", registered=False)
    assert await rejected(session, t.user_id, limit(m, Side.SELL)) == "NO_LINKED_WALLET"


async def test_wallet_frozen(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m, cash="100", tokens="100", frozen=True)
    assert await rejected(session, t.user_id, limit(m, Side.SELL)) == "WALLET_FROZEN"
    assert await rejected(session, t.user_id, limit(m, Side.BUY)) == "WALLET_FROZEN"


async def test_token_paused(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, paused=True)
    t = await make_trader(session_factory, m, cash="100", tokens="100")
    assert await rejected(session, t.user_id, limit(m, Side.BUY)) == "TOKEN_PAUSED"


@pytest.mark.parametrize("status", [MarketStatus.HALTED, MarketStatus.CLOSED])
async def test_market_not_open(session_factory, session, status):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, status=status)
    t = await make_trader(session_factory, m, cash="100", tokens="100")
    assert await rejected(session, t.user_id, limit(m, Side.BUY)) == "MARKET_NOT_OPEN"


async def test_insufficient_token_balance_counts_frozen_amount_and_open_sells(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m, tokens="100", frozen_amount="30")
    assert await rejected(session, t.user_id, limit(m, Side.SELL, qty="71")) == "INSUFFICIENT_TOKEN_BALANCE"
    ok = await place_order(session, t.user_id, limit(m, Side.SELL, qty="50", price="9.00"))
    assert ok.order.status is OrderStatus.NEW
    assert await rejected(session, t.user_id, limit(m, Side.SELL, qty="21")) == "INSUFFICIENT_TOKEN_BALANCE"
    ok = await place_order(session, t.user_id, limit(m, Side.SELL, qty="20", price="9.00"))
    assert ok.order.status is OrderStatus.NEW


async def test_sold_tokens_stay_committed_until_the_transfer_settles_on_chain(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=0, taker_bps=0)
    seller = await make_trader(session_factory, m, tokens="10")
    buyer = await make_trader(session_factory, m, cash="1000")
    await place_order(session, seller.user_id, limit(m, Side.SELL, qty="10", price="1.00"))
    filled = await place_order(session, buyer.user_id, limit(m, Side.BUY, qty="10", price="1.00"))
    assert filled.order.status is OrderStatus.FILLED
    # the indexed balance still shows 10 (the transfer instruction is PENDING), but they are sold
    assert await rejected(session, seller.user_id, limit(m, Side.SELL, qty="1")) == "INSUFFICIENT_TOKEN_BALANCE"


async def test_insufficient_cash_includes_the_fee(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=10, taker_bps=20)
    t = await make_trader(session_factory, m, cash="10.01")
    # 10 x 1.00 + 20 bps = 10.02 > 10.01
    assert await rejected(session, t.user_id, limit(m, Side.BUY, qty="10")) == "INSUFFICIENT_CASH"
    (cash,) = await ledger.balances(session, t.user_id)
    assert cash.available == Decimal("10.01") and cash.reserved == 0
    async with session_factory() as s:
        await ledger.credit_deposit(s, t.user_id, Decimal("0.01"), m.quote, reference="top-up")
        await s.commit()
    ok = await place_order(session, t.user_id, limit(m, Side.BUY, qty="10"))
    assert ok.order.status is OrderStatus.NEW and ok.order.reserved_cash == Decimal("10.02")


async def test_gate_order_market_status_first(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, paused=True, status=MarketStatus.HALTED)
    t = await make_trader(session_factory, m, kyc=None, wallet=False)
    assert await rejected(session, t.user_id, limit(m, Side.BUY)) == "MARKET_NOT_OPEN"
    async with session_factory() as s:
        await s.execute(update(Market).where(Market.id == m.market_id).values(status=MarketStatus.OPEN))
        await s.execute(update(Token).where(Token.id == m.token_id).values(paused=False))
        await s.commit()
    assert await rejected(session, t.user_id, limit(m, Side.BUY)) == "KYC_NOT_APPROVED"


async def test_open_sells_in_the_tokens_other_market_count(session_factory, session):  # type: ignore[no-untyped-def]
    """Tokens offered in one quote currency cannot be offered again in another; other tokens' sells do not count."""
    from tests.trading.test_risk_concurrency import second_market

    usd = await make_market(session_factory)
    eur = await second_market(session_factory, usd)
    t = await make_trader(session_factory, usd, tokens="100")
    other = await make_market(session_factory)
    await make_trader(session_factory, other, tokens="100", user_id=t.user_id, kyc=None)  # another token and wallet
    assert (await place_order(session, t.user_id, limit(other, Side.SELL, qty="100"))).order.status is OrderStatus.NEW
    assert (await place_order(session, t.user_id, limit(usd, Side.SELL, qty="60"))).order.status is OrderStatus.NEW
    assert await rejected(session, t.user_id, limit(eur, Side.SELL, qty="41")) == "INSUFFICIENT_TOKEN_BALANCE"
    placed = await place_order(session, t.user_id, limit(eur, Side.SELL, qty="40"))
    assert placed.order.status is OrderStatus.NEW
