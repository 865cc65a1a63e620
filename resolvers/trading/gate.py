"""The compliance gate an order passes before it reaches the book. A refusal is not an error: the order is stored
REJECTED with one of these reason codes, checked in this order:

    MARKET_NOT_OPEN, TOKEN_PAUSED, KYC_NOT_APPROVED,
    NO_LINKED_WALLET           no linked wallet that the token's indexed identity registry lists (registered)
    WALLET_FROZEN              every eligible wallet is frozen (holdings.frozen)
    INSUFFICIENT_TOKEN_BALANCE sell: indexed balance - frozen amount - open sells - unsettled outgoing < quantity
    INSUFFICIENT_CASH          buy: ledger AVAILABLE < the order's cash reservation (price x qty + max fee)

Runs under the market's matching lock, so the user's open sells in this market cannot change meanwhile (open
sells of the same token in its other quote-currency markets are counted, but not locked).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.identity import KycCase, KycStatus, Wallet
from models.ledger import AccountKind, LedgerAccount
from models.tokens import Holding, IdentityEntry, Token
from models.trading import OPEN_STATUSES, InstructionStatus, Market, MarketStatus, Order, SettlementInstruction, Side
from resolvers.identity.kyc import status_of


@dataclass(frozen=True)
class GateResult:
    reason: str | None  # None: passed
    wallet: str | None = None


def to_units(quantity: Decimal, decimals: int) -> int:
    return int(quantity.scaleb(decimals))


async def available_cash(session: AsyncSession, user_id: uuid.UUID, currency: str) -> Decimal:
    value = (await session.execute(select(LedgerAccount.balance).where(
        LedgerAccount.owner_id == user_id, LedgerAccount.kind == AccountKind.AVAILABLE,
        LedgerAccount.currency == currency))).scalar_one_or_none()
    return value if value is not None else Decimal(0)


async def committed_units(session: AsyncSession, market: Market, wallet: str) -> int:
    """Token units of `wallet` already promised: open sells (remaining) plus unsettled outgoing instructions."""
    open_qty = (await session.execute(select(func.coalesce(func.sum(Order.quantity - Order.filled_quantity), 0))
                                      .where(Order.market_id.in_(select(Market.id).where(Market.base_token_id == market.base_token_id)),
                                             Order.side == Side.SELL,
                                             Order.status.in_(OPEN_STATUSES), Order.wallet_address == wallet))
                ).scalar_one()
    pending = (await session.execute(select(func.coalesce(func.sum(SettlementInstruction.amount), 0)).where(
        SettlementInstruction.chain_id == market.chain_id, SettlementInstruction.token_address == market.token_address,
        SettlementInstruction.from_wallet == wallet,
        SettlementInstruction.status.in_((InstructionStatus.PENDING, InstructionStatus.SUBMITTED))))).scalar_one()
    return to_units(Decimal(open_qty), market.base_decimals) + int(pending)


async def check(session: AsyncSession, market: Market, token: Token, user_id: uuid.UUID, side: Side,
                quantity: Decimal, cash_needed: Decimal, now: datetime) -> GateResult:
    if market.status is not MarketStatus.OPEN:
        return GateResult("MARKET_NOT_OPEN")
    if token.paused:
        return GateResult("TOKEN_PAUSED")
    case = (await session.execute(select(KycCase).where(KycCase.user_id == user_id))).scalar_one_or_none()
    if case is None or status_of(case, now) is not KycStatus.APPROVED:
        return GateResult("KYC_NOT_APPROVED")
    if token.identity_registry is None:
        return GateResult("NO_LINKED_WALLET")
    rows = (await session.execute(
        select(Wallet.address, Holding.balance, Holding.frozen_amount, Holding.frozen)
        .join(IdentityEntry, (IdentityEntry.investor == Wallet.address)
              & (IdentityEntry.chain_id == market.chain_id)
              & (IdentityEntry.registry_address == token.identity_registry)
              & IdentityEntry.registered.is_(True))
        .outerjoin(Holding, (Holding.holder == Wallet.address) & (Holding.chain_id == market.chain_id)
                   & (Holding.token_address == market.token_address))
        .where(Wallet.user_id == user_id).order_by(Wallet.linked_at, Wallet.address))).all()
    if not rows:
        return GateResult("NO_LINKED_WALLET")
    usable = [r for r in rows if not r.frozen]
    if not usable:
        return GateResult("WALLET_FROZEN", rows[0].address)
    if side is Side.SELL:
        need = to_units(quantity, market.base_decimals)
        best: tuple[int, str] | None = None
        for r in usable:
            free = int(r.balance or 0) - int(r.frozen_amount or 0) - await committed_units(session, market, r.address)
            if best is None or free > best[0]:
                best = (free, r.address)
        assert best is not None
        if best[0] < need:
            return GateResult("INSUFFICIENT_TOKEN_BALANCE", best[1])
        return GateResult(None, best[1])
    if await available_cash(session, user_id, market.quote_currency) < cash_needed:
        return GateResult("INSUFFICIENT_CASH", usable[0].address)
    return GateResult(None, usable[0].address)
