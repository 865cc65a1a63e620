"""The compliance gate an order passes before it reaches the book. A refusal is not an error: the order is stored
REJECTED with one of these reason codes, checked in this order:

    MARKET_NOT_OPEN, TOKEN_PAUSED, KYC_NOT_APPROVED,
    NO_LINKED_WALLET           no linked wallet that the token's indexed identity registry lists (registered)
    WALLET_FROZEN              every eligible wallet is frozen (holdings.frozen)
    INSUFFICIENT_TOKEN_BALANCE sell: indexed balance - frozen amount - open sells - outstanding outgoing < quantity
    INSUFFICIENT_CASH          buy: ledger AVAILABLE < the order's cash reservation (price x qty + max fee)

Outstanding outgoing: settlement instructions from the wallet that are not finished (their operation is not yet
CONFIRMED/FAILED, which moves the instruction in the same transaction) AND whose transfer is not yet in the indexed
`token_transfers` (matched by any tx hash the agent broadcast for it). Holdings are indexed balances: once the
transfer is indexed, final or not, the balance already shows it, and counting the instruction too would count the
same tokens twice (a reorg that removes the transfer brings the instruction back into the count).

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
from resolvers.trading.book import BARRED_SQL, FIRST_BATCH, RESTING_COLUMNS, MarketSpec, Prefetched
from resolvers.trading.risk import LIMITS_SQL, Limits, limits_of

NO_PRICE_BOUND = Decimal("1e18")  # above any price (orders.MAX_AMOUNT)


@dataclass(frozen=True)
class GateResult:
    reason: str | None  # None: passed
    wallet: str | None = None


def to_units(quantity: Decimal, decimals: int) -> int:
    return int(quantity.scaleb(decimals))


# The market with its base token, the caller's earlier order with this clientOrderId (idempotency; `$4 IS NOT NULL`
# makes the lookup a one-time filter of the cached plan: without it, a planner without statistics walked all the
# user's orders by ix_orders_user_created for an order that has none), and everything
# the gate reads, in one round trip: the KYC case, AVAILABLE cash (buys), and every linked wallet the token's
# identity registry lists with its holding and, for sells, what is already promised from it (open sells of the token
# in any of its markets, unsettled outgoing instructions), and the market's risk limits and maker fee tiers
# (resolvers/trading/risk.py, $5: now), and the first `book.FIRST_BATCH` ($7) resting orders of the opposite side
# that cross the order's price ($6; 0 / 1e18 when it has none), best first, for matching (book.Prefetched): the
# read book.match_against_book would make next, one round trip earlier (nothing between them writes orders). One
# row per wallet; one row of NULL wallet columns when there is none; no row when the market does not exist.
_BOOK = (
    """
          (SELECT """
    + ", ".join("o." + c for c in RESTING_COLUMNS)
    + ", "
    + BARRED_SQL.replace("{o}", "o")
    + """, {k} AS k
           FROM orders o
           WHERE {taker_sell} AND o.market_id = $1 AND o.side = '{side}' AND o.status IN ('NEW', 'PARTIALLY_FILLED')
             AND o.price {cross} $6
           ORDER BY o.price {direction}, o.seq ASC LIMIT $7)"""
)
# Outstanding outgoing, without walking every unfinished instruction of the wallet (that grew with the agent's
# backlog: ~2.5 ms per sell at 500): the total of its unfinished instructions (`settlement_outgoing`, kept by triggers
# on settlement_instructions, migration 0023) minus those whose transfer is already indexed. An instruction can only
# be indexed if a hash names it: one of its operation's `tx_hashes`, or its own `tx_hash`; so only instructions whose
# operation has a hash and is not final (a final operation finished its instruction in the same transaction; were
# one not, its instruction would count as outgoing: the safe side), or
# that carry a hash, are looked up (both by partial indexes; the agent keeps few in flight).
# Open sells: `market_id = ANY(ARRAY(...))` searches the book index in the token's markets only (with `IN (SELECT
# ...)` a planner without statistics walked every open sell of every market).
_UUID_REF = "^settlement:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# Each linked wallet of user {user} that the token's identity registry lists, with its holding and, when {sell}, what is
# already promised from it (open sells of the token in any of its markets, unsettled outgoing instructions): the
# rows of `decide` (LATERAL under `markets m JOIN tokens t`; also the batch read, resolvers/trading/batch_sql.py)
WALLETS = (
    """
    SELECT wa.address, wa.linked_at, h.balance, h.frozen_amount, h.frozen,
           CASE WHEN {sell} THEN (SELECT coalesce(sum(o.quantity - o.filled_quantity), 0) FROM orders o
                              WHERE o.market_id = ANY(ARRAY(SELECT mm.id FROM markets mm
                                                            WHERE mm.base_token_id = m.base_token_id))
                                AND o.side = 'SELL' AND o.status IN ('NEW', 'PARTIALLY_FILLED')
                                AND o.wallet_address = wa.address) END AS open_qty,
           CASE WHEN {sell} THEN coalesce((SELECT so.amount FROM settlement_outgoing so
                                       WHERE so.chain_id = m.chain_id AND so.token_address = m.token_address
                                         AND so.wallet = wa.address), 0)
                           - (SELECT coalesce(sum(s.amount), 0) FROM (
                                      SELECT CASE WHEN c.business_ref ~ '"""
    + _UUID_REF
    + """'
                                                  THEN substr(c.business_ref, 12)::uuid END
                                      FROM chain_operations c
                                      WHERE c.chain_id = m.chain_id AND c.tx_hashes <> '{}'
                                        AND c.state NOT IN ('CONFIRMED', 'FAILED', 'CANCELED')
                                      UNION
                                      SELECT h.id FROM settlement_instructions h
                                      WHERE h.chain_id = m.chain_id AND h.token_address = m.token_address
                                        AND h.from_wallet = wa.address AND h.status IN ('PENDING', 'SUBMITTED')
                                        AND h.tx_hash IS NOT NULL) named(id)
                              -- OFFSET 0: not pulled up, so each named instruction is one primary-key lookup (the
                              -- planner would rather walk every unfinished one when it has no statistics)
                              CROSS JOIN LATERAL (SELECT * FROM settlement_instructions i WHERE i.id = named.id
                                                  OFFSET 0) s
                              LEFT JOIN chain_operations op ON op.business_ref = 'settlement:' || s.id::text
                              WHERE s.chain_id = m.chain_id AND s.token_address = m.token_address
                                AND s.from_wallet = wa.address AND s.status IN ('PENDING', 'SUBMITTED')
                                AND EXISTS (
                                    SELECT 1 FROM token_transfers tt
                                    WHERE tt.chain_id = s.chain_id AND tt.token_address = s.token_address
                                      AND tt.from_address = s.from_wallet
                                      AND tt.tx_hash = ANY(coalesce(op.tx_hashes, '{}') || s.tx_hash)
                                    OFFSET 0)) END AS pending
    FROM wallets wa
    JOIN identities ie ON ie.investor = wa.address AND ie.chain_id = m.chain_id
                          AND ie.registry_address = t.identity_registry AND ie.registered
    LEFT JOIN holdings h ON h.holder = wa.address AND h.chain_id = m.chain_id AND h.token_address = m.token_address
    WHERE wa.user_id = {user}"""
)
_READ = (
    """
SELECT m.id, m.status, m.base_token_id, m.chain_id, m.token_address, m.base_decimals, m.quote_currency, m.tick_size,
       m.lot_size, m.min_notional, m.maker_fee_bps, m.taker_fee_bps, t.paused, t.identity_registry,
       (SELECT o.id FROM orders o WHERE o.user_id = $2 AND o.client_order_id = $4 AND $4 IS NOT NULL) AS existing,
       k.status AS kyc, k.expires_at AS kyc_expires,
       CASE WHEN NOT $3 THEN (SELECT a.balance FROM ledger_accounts a WHERE a.owner_id = $2 AND a.kind = 'AVAILABLE'
                                                                      AND a.currency = m.quote_currency) END AS cash,
       w.address, w.balance, w.frozen_amount, w.frozen, w.open_qty, w.pending, rk.*, bk.*
FROM markets m
JOIN tokens t ON t.id = m.base_token_id
LEFT JOIN kyc_cases k ON k.user_id = $2
LEFT JOIN LATERAL ("""
    + LIMITS_SQL
    + """) rk ON true
LEFT JOIN LATERAL (
    """
    + WALLETS.replace("{user}", "$2").replace("{sell}", "$3")
    + """
) w ON true
LEFT JOIN LATERAL (
    SELECT """
    + ", ".join(f"array_agg(r.{c} ORDER BY r.k, r.seq) AS bk_{c}" for c in (*RESTING_COLUMNS, "barred"))
    + """
    FROM ("""
    + _BOOK.format(taker_sell="$3", side="BUY", cross=">=", k="-o.price", direction="DESC")
    + """
          UNION ALL"""
    + _BOOK.format(taker_sell="NOT $3", side="SELL", cross="<=", k="o.price", direction="ASC")
    + """) r
) bk ON true
WHERE m.id = $1
ORDER BY w.linked_at, w.address"""
)


@dataclass
class Inputs:
    """What `read` found: the market (None: no such market), the earlier order with the same clientOrderId, and
    the rows `decide` needs."""

    market: MarketSpec | None
    existing: uuid.UUID | None
    rows: list[Any]
    limits: Limits = Limits()
    book: Prefetched | None = None


async def read(
    session: AsyncSession,
    market_id: uuid.UUID,
    user_id: uuid.UUID,
    side: Side,
    client_order_id: str | None,
    now: datetime,
    price: Decimal | None = None,
) -> Inputs:
    """Run under the market lock (see the module docstring). `price`: the order's limit (cap, floor), for the
    prefetched book."""
    sell = side is Side.SELL
    bound = price if price is not None else (Decimal(0) if sell else NO_PRICE_BOUND)
    rows = await (await pg(session)).fetch(_READ, market_id, user_id, sell, client_order_id, now, bound, FIRST_BATCH)
    if not rows:
        return Inputs(None, None, [])
    r = rows[0]
    return Inputs(
        MarketSpec(r[0], MarketStatus(r[1]), *r[2:14]),
        r["existing"],
        rows,
        limits_of(r),
        Prefetched.of(Side.BUY if sell else Side.SELL, price, r),
    )


def decide(
    market: MarketSpec, rows: list[Any], user_side: Side, quantity: Decimal, cash_needed: Decimal, now: datetime
) -> GateResult:
    if market.status is not MarketStatus.OPEN:
        return GateResult("MARKET_NOT_OPEN")
    if market.paused:
        return GateResult("TOKEN_PAUSED")
    first = rows[0]
    if (
        first["kyc"] is None
        or effective_status(KycStatus(first["kyc"]), first["kyc_expires"], now) is not KycStatus.APPROVED
    ):
        return GateResult("KYC_NOT_APPROVED")
    wallets = [r for r in rows if r["address"] is not None]
    if market.identity_registry is None or not wallets:
        return GateResult("NO_LINKED_WALLET")
    usable = [r for r in wallets if not r["frozen"]]
    if not usable:
        return GateResult("WALLET_FROZEN", wallets[0]["address"])
    if user_side is Side.SELL:
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
