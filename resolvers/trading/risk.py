"""Pre-trade risk controls and the circuit breaker of a market (models.trading.MarketRiskLimits, set by ADMIN through
resolvers/trading/risk_admin.py). Every check runs in placeOrder under the market's matching lock, so concurrent
orders cannot pass a limit together. A refusal is a REJECTED order with one of these reasons, checked after the
compliance gate (resolvers/trading/gate.py), in this order:

    PRICE_OUTSIDE_BAND            a LIMIT price outside reference x (1 +- band); the reference is the last trade's
                                  price, before any trade the market's reference price (from the asset's valuation).
                                  MARKET orders are not refused: their fills are kept inside the band (cap/floor).
    MAX_ORDER_QUANTITY_EXCEEDED   quantity above the market's maximum
    PRICE_REQUIRED                a notional limit applies and a MARKET sell has no floor, no band and no reference
    MAX_ORDER_NOTIONAL_EXCEEDED   order value above the market's maximum
    DAILY_NOTIONAL_LIMIT_EXCEEDED the investor's order value today (UTC) in this market would pass the daily limit
    MAX_POSITION_EXCEEDED         a buy would take the investor's position in the token above the maximum

Order value = quantity x the order's price: its limit price, a MARKET buy's cap, a MARKET sell's floor (else the
band's low edge, else the last trade). The daily counter (investor_daily_notional) adds the value of what an order
filled or left resting; canceling or expiring a resting order gives its remainder back (a GTD order that a taker
finds expired while matching keeps it counted: conservative).

Position (buys only) = the token balance of all the investor's linked wallets (indexed) + incoming settlement legs
not yet indexed + open buys in every market of the token; it is read under a second advisory lock per
(investor, token), so orders in the token's other quote-currency markets cannot race it either.

Circuit breaker: with `breaker_move_bps`, `breaker_window_s` and `breaker_halt_s` set, a fill whose price differs
from the reference (the last trade at the start of the window, i.e. `window` seconds ago; before that the first
trade since, else the order's own first fill) by more than the move is not made: matching stops before it, the
order's remainder is canceled (reason CIRCUIT_BREAKER; REJECTED when nothing filled), and the market is HALTED
for `breaker_halt_s` seconds with its book intact. The halt ends when it is due: at the next placement (under the
lock) or by the worker's `resume_due_markets`, whichever comes first. ADMIN may reopen earlier (setMarketStatus).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Any

import asyncpg

from models.trading import OrderStatus, OrderType, Side, TimeInForce
from resolvers.trading.matching import Incoming, MatchResult

BPS = Decimal(10000)
ZERO = Decimal(0)
CIRCUIT_BREAKER = "CIRCUIT_BREAKER"
KILL_SWITCH = "KILL_SWITCH"

# The market's limits, halt state, the reference prices the enabled controls need, the caller's order value today
# and the market's designated makers' fee tiers: a LATERAL join of the gate's one read (resolvers/trading/gate.py:
# $1 market, $2 user, $5 now). Each subquery runs only when its control is on; all are index lookups.
LIMITS_SQL = """
SELECT rl.market_id IS NOT NULL AS rl_present, rl.price_band_bps AS rl_band, rl.reference_price AS rl_reference,
       rl.max_order_quantity AS rl_max_qty, rl.max_order_notional AS rl_max_notional,
       rl.daily_notional_limit AS rl_daily, rl.max_position AS rl_max_position, rl.breaker_move_bps AS rl_move,
       rl.breaker_window_s AS rl_window, rl.breaker_halt_s AS rl_halt, rl.halted_until AS rl_halted_until,
       rl.halt_reason AS rl_halt_reason,
       CASE WHEN rl.price_band_bps IS NOT NULL OR rl.max_order_notional IS NOT NULL
                 OR rl.daily_notional_limit IS NOT NULL
            THEN (SELECT tr.price FROM trades tr WHERE tr.market_id = m.id ORDER BY tr.seq DESC LIMIT 1) END AS rl_last,
       CASE WHEN rl.breaker_move_bps IS NOT NULL THEN coalesce(
            (SELECT tr.price FROM trades tr WHERE tr.market_id = m.id
               AND tr.created_at <= $5::timestamptz - make_interval(secs => rl.breaker_window_s)
             ORDER BY tr.created_at DESC LIMIT 1),
            (SELECT tr.price FROM trades tr WHERE tr.market_id = m.id
               AND tr.created_at > $5::timestamptz - make_interval(secs => rl.breaker_window_s)
             ORDER BY tr.created_at ASC LIMIT 1)) END AS rl_breaker_ref,
       CASE WHEN rl.daily_notional_limit IS NOT NULL
            THEN (SELECT d.notional FROM investor_daily_notional d
                  WHERE d.market_id = m.id AND d.user_id = $2 AND d.day = ($5::timestamptz AT TIME ZONE 'UTC')::date) END AS rl_used,
       mk.users AS mm_users, mk.maker AS mm_maker, mk.taker AS mm_taker
FROM (SELECT 1) one
LEFT JOIN market_risk_limits rl ON rl.market_id = m.id
LEFT JOIN LATERAL (SELECT array_agg(x.user_id) AS users, array_agg(x.maker_fee_bps) AS maker,
                          array_agg(x.taker_fee_bps) AS taker
                   FROM market_makers x WHERE x.market_id = m.id AND x.active) mk ON true"""


@dataclass(frozen=True, slots=True)
class Limits:
    """What LIMITS_SQL read for one placement."""

    present: bool = False  # the market has a risk row
    band_bps: int | None = None
    reference: Decimal | None = None
    max_quantity: Decimal | None = None
    max_notional: Decimal | None = None
    daily: Decimal | None = None
    max_position: Decimal | None = None
    move_bps: int | None = None
    window_s: int | None = None
    halt_s: int | None = None
    halted_until: datetime | None = None
    halt_reason: str | None = None
    last_price: Decimal | None = None
    breaker_ref: Decimal | None = None
    used_today: Decimal = ZERO
    fee_tiers: dict[uuid.UUID, tuple[int, int]] = field(default_factory=dict)  # user -> (maker bps, taker bps)

    @property
    def reference_price(self) -> Decimal | None:
        return self.last_price if self.last_price is not None else self.reference

    @property
    def breaker_on(self) -> bool:
        return self.move_bps is not None and self.window_s is not None and self.halt_s is not None

    def resume_due(self, now: datetime) -> bool:
        return self.halt_reason == CIRCUIT_BREAKER and self.halted_until is not None and self.halted_until <= now

    def fees(self, user_id: Any, maker_bps: int, taker_bps: int) -> tuple[int, int]:
        """(maker, taker) fee in bps for `user_id`: its market-maker tier, else the market's."""
        return self.fee_tiers.get(user_id, (maker_bps, taker_bps))


def limits_of(row: Any) -> Limits:
    users = row["mm_users"]
    tiers = {} if users is None else {u: (mk, tk) for u, mk, tk in zip(users, row["mm_maker"], row["mm_taker"])}
    if not row["rl_present"]:
        return Limits(fee_tiers=tiers)
    return Limits(
        True,
        row["rl_band"],
        row["rl_reference"],
        row["rl_max_qty"],
        row["rl_max_notional"],
        row["rl_daily"],
        row["rl_max_position"],
        row["rl_move"],
        row["rl_window"],
        row["rl_halt"],
        row["rl_halted_until"],
        row["rl_halt_reason"],
        row["rl_last"],
        row["rl_breaker_ref"],
        row["rl_used"] or ZERO,
        tiers,
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str | None
    value_price: Decimal | None = None  # the price the order's value is counted at (daily counter)
    match_price: Decimal | None = None  # the taker's limit for matching (a MARKET order's band edge)


def _ticks(value: Decimal, tick: Decimal, rounding: str) -> Decimal:
    with localcontext(prec=100):
        return (value / tick).to_integral_value(rounding=rounding) * tick


def band(reference: Decimal, band_bps: int) -> tuple[Decimal, Decimal]:
    with localcontext(prec=100):
        return reference * (BPS - band_bps) / BPS, reference * (BPS + band_bps) / BPS


def check(
    lim: Limits, side: Side, type_: OrderType, quantity: Decimal, price: Decimal | None, tick: Decimal
) -> Verdict:
    """The market-level and daily checks (no I/O); the position check is `position_refusal`."""
    if not lim.present:
        return Verdict(None, price, price)
    match_price = price
    ref = lim.reference_price
    if lim.band_bps is not None and ref is not None:
        lo, hi = band(ref, lim.band_bps)
        if type_ is OrderType.LIMIT:
            assert price is not None
            if not lo <= price <= hi:
                return Verdict("PRICE_OUTSIDE_BAND")
        elif side is Side.BUY:  # a MARKET buy always has a cap (orders.validate)
            match_price = (
                min(price, _ticks(hi, tick, ROUND_FLOOR)) if price is not None else _ticks(hi, tick, ROUND_FLOOR)
            )
        else:
            edge = _ticks(lo, tick, ROUND_CEILING)
            match_price = edge if price is None else max(price, edge)
    if lim.max_quantity is not None and quantity > lim.max_quantity:
        return Verdict("MAX_ORDER_QUANTITY_EXCEEDED")
    value_price = match_price if match_price is not None else ref
    if lim.max_notional is not None or lim.daily is not None:
        if value_price is None:
            return Verdict("PRICE_REQUIRED")
        with localcontext(prec=100):
            value = value_price * quantity
            if lim.max_notional is not None and value > lim.max_notional:
                return Verdict("MAX_ORDER_NOTIONAL_EXCEEDED")
            if lim.daily is not None and lim.used_today + value > lim.daily:
                return Verdict("DAILY_NOTIONAL_LIMIT_EXCEEDED")
    return Verdict(None, value_price, match_price)


def position_lock(user_id: uuid.UUID, token_id: uuid.UUID) -> tuple[int, int]:
    """The (int4, int4) advisory key of an investor's position in a token (the two-key space: never a market's)."""
    digest = hashlib.sha256(user_id.bytes + token_id.bytes).digest()
    return int.from_bytes(digest[:4], "big", signed=True), int.from_bytes(digest[4:8], "big", signed=True)


# raw units held by the user's wallets + incoming settlement legs not yet indexed; whole units of open buys in any
# market of the token
_POSITION = """
SELECT (SELECT coalesce(sum(h.balance), 0) FROM wallets wa
        JOIN holdings h ON h.holder = wa.address AND h.chain_id = m.chain_id AND h.token_address = m.token_address
        WHERE wa.user_id = $2)
     + (SELECT coalesce(sum(s.amount), 0) FROM settlement_instructions s
        JOIN wallets wa ON wa.address = s.to_wallet AND wa.user_id = $2
        LEFT JOIN chain_operations op ON op.business_ref = 'settlement:' || s.id::text
        WHERE s.chain_id = m.chain_id AND s.token_address = m.token_address AND s.status IN ('PENDING', 'SUBMITTED')
          AND NOT EXISTS (SELECT 1 FROM token_transfers tt
                          WHERE tt.chain_id = s.chain_id AND tt.token_address = s.token_address
                            AND tt.to_address = s.to_wallet
                            AND tt.tx_hash = ANY(coalesce(op.tx_hashes, '{}') || s.tx_hash))) AS units,
       (SELECT coalesce(sum(o.quantity - o.filled_quantity), 0) FROM orders o
        WHERE o.user_id = $2 AND o.side = 'BUY' AND o.status IN ('NEW', 'PARTIALLY_FILLED')
          AND o.market_id IN (SELECT mm.id FROM markets mm WHERE mm.base_token_id = m.base_token_id)) AS open_buys
FROM markets m WHERE m.id = $1"""


async def position(conn: asyncpg.Connection, market_id: uuid.UUID, user_id: uuid.UUID, decimals: int) -> Decimal:
    row = await conn.fetchrow(_POSITION, market_id, user_id)
    return Decimal(row["units"]).scaleb(-decimals) + row["open_buys"]


async def position_refusal(
    conn: asyncpg.Connection, lim: Limits, market: Any, user_id: uuid.UUID, side: Side, quantity: Decimal
) -> str | None:
    """MAX_POSITION_EXCEEDED or None; takes the (investor, token) lock first (held to commit)."""
    if lim.max_position is None or side is not Side.BUY:
        return None
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *position_lock(user_id, market.base_token_id))
    held = await position(conn, market.id, user_id, market.base_decimals)
    return "MAX_POSITION_EXCEEDED" if held + quantity > lim.max_position else None


def breaker_cut(lim: Limits, taker: Incoming[uuid.UUID], result: MatchResult[uuid.UUID]) -> bool:
    """Drop the fills from the first one that moves the price beyond the breaker (all of them for FOK), cancel the
    remainder; True when the breaker tripped (the caller halts the market)."""
    if not lim.breaker_on or lim.move_bps is None or not result.fills:  # (breaker_on implies move_bps)
        return False
    ref = lim.breaker_ref if lim.breaker_ref is not None else result.fills[0].price
    lo, hi = band(ref, lim.move_bps)
    cut = next((i for i, f in enumerate(result.fills) if not lo <= f.price <= hi), None)
    if cut is None:
        return False
    kept = [] if taker.time_in_force is TimeInForce.FOK else result.fills[:cut]
    result.fills = kept
    result.filled = sum((f.quantity for f in kept), ZERO)
    result.remaining = taker.quantity - result.filled
    result.rests = False
    result.status = OrderStatus.CANCELED if result.filled else OrderStatus.REJECTED
    result.reason = CIRCUIT_BREAKER
    return True


def with_price(taker: Incoming[uuid.UUID], price: Decimal | None) -> Incoming[uuid.UUID]:
    return taker if price == taker.price else replace(taker, price=price)


_HALT = """
WITH m AS (UPDATE markets SET status = 'HALTED' WHERE id = $1 AND status = 'OPEN' RETURNING id),
     r AS (INSERT INTO market_risk_limits (market_id, halted_until, halt_reason, updated_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (market_id) DO UPDATE SET halted_until = $2, halt_reason = $3, updated_at = $4),
     a AS (INSERT INTO audit_log (actor_id, action, target_type, target_id, request_id, details)
           VALUES ($5, $6, 'market', $1::text, $7, $8))
SELECT count(*) FROM m"""


async def halt(
    conn: asyncpg.Connection,
    market_id: uuid.UUID,
    *,
    until: datetime | None,
    reason: str,
    now: datetime,
    actor_id: uuid.UUID | None,
    action: str,
    request_id: str | None,
    details: dict[str, Any],
) -> None:
    """HALTED with its reason (and end for the breaker), audited; run under the market lock."""
    await conn.fetchval(
        _HALT,
        market_id,
        until,
        reason,
        now,
        actor_id,
        action,
        request_id,
        json.dumps({"reason": reason, "until": until.isoformat() if until else None, **details}),
    )


async def trip(
    conn: asyncpg.Connection,
    lim: Limits,
    market_id: uuid.UUID,
    now: datetime,
    request_id: str | None,
    order_id: uuid.UUID,
) -> None:
    await halt(
        conn,
        market_id,
        until=now + timedelta(seconds=lim.halt_s or 0),
        reason=CIRCUIT_BREAKER,
        now=now,
        actor_id=None,
        action="market.circuit_breaker",
        request_id=request_id,
        details={
            "reference": str(lim.breaker_ref) if lim.breaker_ref is not None else None,
            "moveBps": lim.move_bps,
            "windowS": lim.window_s,
            "order": str(order_id),
        },
    )


# a due breaker halt ends: the state is cleared and the market OPEN again (unless ADMIN closed or reopened it)
_RESUME = """
WITH r AS (UPDATE market_risk_limits SET halted_until = NULL, halt_reason = NULL, updated_at = $2
           WHERE market_id = $1 AND halt_reason = 'CIRCUIT_BREAKER' AND halted_until <= $2 RETURNING market_id),
     m AS (UPDATE markets SET status = 'OPEN' WHERE id IN (SELECT market_id FROM r) AND status = 'HALTED'
           RETURNING id),
     a AS (INSERT INTO audit_log (actor_id, action, target_type, target_id, details)
           SELECT NULL, 'market.resume', 'market', id::text, '{"reason": "CIRCUIT_BREAKER"}'::jsonb FROM m)
SELECT count(*) FROM m"""


async def resume_if_due(conn: asyncpg.Connection, market_id: uuid.UUID, now: datetime) -> bool:
    """Run under the market lock; True when the market is OPEN again."""
    return bool(await conn.fetchval(_RESUME, market_id, now))
