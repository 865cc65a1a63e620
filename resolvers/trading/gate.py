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

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models.identity import KycStatus
from models.trading import MarketStatus, Side
from resolvers.identity.kyc_states import effective_status
from resolvers.raw_sql import pg


@dataclass(frozen=True)
class GateResult:
    reason: str | None  # None: passed
    wallet: str | None = None


def to_units(quantity: Decimal, decimals: int) -> int:
    return int(quantity.scaleb(decimals))


# Everything the gate reads, in one round trip: the KYC case, AVAILABLE cash (buys), and every linked wallet the
# token's identity registry lists with its holding and, for sells, what is already promised from it (open sells of
# the token in any of its markets, unsettled outgoing instructions). One row per wallet; one row of NULL wallet
# columns when there is none.
_GATE = """
SELECT k.status AS kyc, k.expires_at AS kyc_expires,
       CASE WHEN NOT $6 THEN (SELECT a.balance FROM ledger_accounts a
                              WHERE a.owner_id = $1 AND a.kind = 'AVAILABLE' AND a.currency = $2) END AS cash,
       w.address, w.balance, w.frozen_amount, w.frozen, w.open_qty, w.pending
FROM (SELECT 1) one
LEFT JOIN kyc_cases k ON k.user_id = $1
LEFT JOIN LATERAL (
    SELECT wa.address, wa.linked_at, h.balance, h.frozen_amount, h.frozen,
           CASE WHEN $6 THEN (SELECT coalesce(sum(o.quantity - o.filled_quantity), 0) FROM orders o
                              WHERE o.market_id IN (SELECT m.id FROM markets m WHERE m.base_token_id = $7)
                                AND o.side = 'SELL' AND o.status IN ('NEW', 'PARTIALLY_FILLED')
                                AND o.wallet_address = wa.address) END AS open_qty,
           CASE WHEN $6 THEN (SELECT coalesce(sum(s.amount), 0) FROM settlement_instructions s
                              WHERE s.chain_id = $3 AND s.token_address = $4 AND s.from_wallet = wa.address
                                AND s.status IN ('PENDING', 'SUBMITTED')) END AS pending
    FROM wallets wa
    JOIN identities ie ON ie.investor = wa.address AND ie.chain_id = $3 AND ie.registry_address = $5
                          AND ie.registered
    LEFT JOIN holdings h ON h.holder = wa.address AND h.chain_id = $3 AND h.token_address = $4
    WHERE wa.user_id = $1
) w ON true
ORDER BY w.linked_at, w.address"""


async def check(session: AsyncSession, market: Any, token: Any, user_id: uuid.UUID, side: Side,
                quantity: Decimal, cash_needed: Decimal, now: datetime) -> GateResult:
    """`market`: models Market or book.MarketSpec; `token`: anything with `paused` and `identity_registry`."""
    if market.status is not MarketStatus.OPEN:
        return GateResult("MARKET_NOT_OPEN")
    if token.paused:
        return GateResult("TOKEN_PAUSED")
    selling = side is Side.SELL
    rows = await (await pg(session)).fetch(_GATE, user_id, market.quote_currency, market.chain_id,
                                           market.token_address, token.identity_registry, selling,
                                           market.base_token_id)
    first = rows[0]
    if first["kyc"] is None or effective_status(KycStatus(first["kyc"]), first["kyc_expires"], now) \
            is not KycStatus.APPROVED:
        return GateResult("KYC_NOT_APPROVED")
    wallets = [r for r in rows if r["address"] is not None]
    if token.identity_registry is None or not wallets:
        return GateResult("NO_LINKED_WALLET")
    usable = [r for r in wallets if not r["frozen"]]
    if not usable:
        return GateResult("WALLET_FROZEN", wallets[0]["address"])
    if selling:
        need = to_units(quantity, market.base_decimals)
        best: tuple[int, str] | None = None
        for r in usable:
            committed = to_units(Decimal(r["open_qty"]), market.base_decimals) + int(r["pending"])
            free = int(r["balance"] or 0) - int(r["frozen_amount"] or 0) - committed
            if best is None or free > best[0]:
                best = (free, r["address"])
        assert best is not None
        if best[0] < need:
            return GateResult("INSUFFICIENT_TOKEN_BALANCE", best[1])
        return GateResult(None, best[1])
    cash = first["cash"] if first["cash"] is not None else Decimal(0)
    if cash < cash_needed:
        return GateResult("INSUFFICIENT_CASH", usable[0]["address"])
    return GateResult(None, usable[0]["address"])
