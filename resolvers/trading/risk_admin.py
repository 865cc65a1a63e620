"""ADMIN's side of the risk controls (resolvers/trading/risk.py): setting a market's limits, reading them with the
halt state, the kill switch, and the worker's end of due circuit-breaker halts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict, NotFound
from core.transactions import transient_retry
from models.assets import Asset
from models.tokens import Token
from models.trading import Market, MarketRiskLimits, MarketStatus, OrderStatus, Trade
from resolvers import unit_of_work
from resolvers.assets import fx
from resolvers.audit import record
from resolvers.raw_sql import pg
from resolvers.trading import risk
from resolvers.trading.book import lock_market
from resolvers.trading.cancel import cancel_locked
from resolvers.trading.market_data import Events
from resolvers.trading.markets import MONEY_LIMIT, check_money_scale

MAX_BPS = 10000
MAX_SECONDS = 7 * 86400
MAX_REASON = 200


@dataclass(frozen=True)
class LimitsSpec:
    """A market's whole configuration (None: that control off)."""

    price_band_bps: int | None = None
    reference_price: Decimal | None = None
    max_order_quantity: Decimal | None = None
    max_order_notional: Decimal | None = None
    daily_notional_limit: Decimal | None = None
    max_position: Decimal | None = None
    breaker_move_bps: int | None = None
    breaker_window_s: int | None = None
    breaker_halt_s: int | None = None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def validate(spec: LimitsSpec) -> None:
    for f in fields(spec):
        value = getattr(spec, f.name)
        if value is None:
            continue
        if isinstance(value, Decimal):
            if not value.is_finite() or not 0 < value < MONEY_LIMIT:
                raise BadUserInput(f"{_camel(f.name)} must be positive and below 1E+20", field=_camel(f.name))
            check_money_scale(_camel(f.name), value)
        elif f.name.endswith("_bps") and not 1 <= value <= MAX_BPS:
            raise BadUserInput(f"{_camel(f.name)} must be between 1 and {MAX_BPS}", field=_camel(f.name))
        elif f.name.endswith("_s") and not 1 <= value <= MAX_SECONDS:
            raise BadUserInput(f"{_camel(f.name)} must be between 1 and {MAX_SECONDS} seconds", field=_camel(f.name))
    breaker = (spec.breaker_move_bps, spec.breaker_window_s, spec.breaker_halt_s)
    if any(v is None for v in breaker) and any(v is not None for v in breaker):
        raise BadUserInput(
            "the circuit breaker needs breakerMoveBps, breakerWindowS and breakerHaltS together", field="breakerMoveBps"
        )


async def valuation_price(session: AsyncSession, market: Market) -> Decimal | None:
    """The asset's latest valuation per whole token, in the market's quote currency: the stablecoin counts as its
    peg (the symbol's first three letters: USDC -> USD), converted with the FX table when the valuation is in
    another currency. None when the token has no supply or valuation, or no FX rate applies."""
    row = (
        await session.execute(
            select(
                Asset.latest_valuation_amount,
                Asset.latest_valuation_currency,
                Asset.latest_valuation_as_of,
                Token.total_supply,
                Token.decimals,
            )
            .join(Token, Token.asset_id == Asset.id)
            .where(Token.id == market.base_token_id)
        )
    ).first()
    if row is None or not row.total_supply or not row.latest_valuation_amount or row.latest_valuation_currency is None:
        return None
    with localcontext(prec=60):
        per_token = row.latest_valuation_amount / (Decimal(row.total_supply).scaleb(-row.decimals))
    peg = market.quote_currency[:3]
    if row.latest_valuation_currency != peg:
        try:
            per_token = await fx.convert(
                session, per_token, row.latest_valuation_currency, peg, row.latest_valuation_as_of
            )
        except (NotFound, BadUserInput):
            return None
    return per_token.quantize(Decimal("1e-18"))


async def set_limits(
    session: AsyncSession, actor_id: uuid.UUID, market_id: uuid.UUID, spec: LimitsSpec, request_id: str | None
) -> MarketRiskLimits:
    """Replace the market's limits (the halt state stays); audited."""
    validate(spec)
    market = await session.get(Market, market_id)
    if market is None:
        raise NotFound("market not found", field="marketId")
    reference = spec.reference_price
    if spec.price_band_bps is not None and reference is None:
        traded = (await session.execute(select(Trade.id).where(Trade.market_id == market_id).limit(1))).first()
        if traded is None:
            reference = await valuation_price(session, market)
            if reference is None:
                raise BadUserInput(
                    "the market has no trade and its asset no valuation per token in "
                    f"{market.quote_currency}: pass referencePrice",
                    field="referencePrice",
                )
    values: dict[str, Any] = {f.name: getattr(spec, f.name) for f in fields(spec)}
    values.update(reference_price=reference, updated_by=actor_id, updated_at=datetime.now(UTC))
    await lock_market(session, market_id)  # placements read the limits under this lock
    await session.execute(
        insert(MarketRiskLimits)
        .values(market_id=market_id, **values)
        .on_conflict_do_update(index_elements=[MarketRiskLimits.market_id], set_=values)
    )
    record(
        session,
        actor_id=actor_id,
        action="market.risk_limits",
        target_type="market",
        target_id=market_id,
        request_id=request_id,
        details={
            _camel(k): (str(v) if isinstance(v, Decimal) else v)
            for k, v in values.items()
            if k not in ("updated_by", "updated_at")
        },
    )
    await unit_of_work.commit(session)
    limits = await get_limits(session, market_id)
    assert limits is not None  # the row was just written
    return limits


async def get_limits(session: AsyncSession, market_id: uuid.UUID) -> MarketRiskLimits | None:
    if await session.get(Market, market_id) is None:
        raise NotFound("market not found", field="marketId")
    return (
        await session.execute(
            select(MarketRiskLimits)
            .where(MarketRiskLimits.market_id == market_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


@dataclass
class Killed:
    status: MarketStatus
    canceled: int
    events: Events


@transient_retry
async def kill_market(
    session: AsyncSession, actor_id: uuid.UUID, market_id: uuid.UUID, reason: str | None, request_id: str | None
) -> Killed:
    """The kill switch, in one transaction under the market lock: HALTED (until ADMIN reopens it with
    setMarketStatus), every open order canceled (reason KILL_SWITCH) with its cash reservation released, audited
    (market.kill, and order.canceled per order naming the ADMIN)."""
    if reason is not None and len(reason) > MAX_REASON:
        raise BadUserInput(f"reason must have at most {MAX_REASON} characters", field="reason")
    now = datetime.now(UTC)
    conn = await pg(session)
    await lock_market(session, market_id)
    status = await conn.fetchval("SELECT status::text FROM markets WHERE id = $1", market_id)
    if status is None:
        raise NotFound("market not found", field="marketId")
    if status == MarketStatus.CLOSED.value:
        await session.rollback()
        raise Conflict("a CLOSED market has no book to stop", reason="MARKET_CLOSED")
    await risk.halt(
        conn,
        market_id,
        until=None,
        reason=risk.KILL_SWITCH,
        now=now,
        actor_id=actor_id,
        action="market.kill",
        request_id=request_id,
        details={"note": reason, "from": status},
    )
    views, events = await cancel_locked(
        session,
        None,
        market_id,
        None,
        reason=risk.KILL_SWITCH,
        status=OrderStatus.CANCELED,
        request_id=request_id,
        now=now,
        strict=False,
        actor_id=actor_id,
    )
    await unit_of_work.commit(session)
    return Killed(MarketStatus.HALTED, len(views), events)


async def resume_due_markets(session: AsyncSession, now: datetime) -> int:
    """End every circuit-breaker halt that is due (the worker; a placement does it too, under the lock).
    Returns how many markets opened again."""
    due = (
        (
            await session.execute(
                select(MarketRiskLimits.market_id).where(
                    MarketRiskLimits.halt_reason == risk.CIRCUIT_BREAKER, MarketRiskLimits.halted_until <= now
                )
            )
        )
        .scalars()
        .all()
    )
    await session.rollback()
    opened = 0
    for market_id in due:
        await lock_market(session, market_id)
        opened += await risk.resume_if_due(await pg(session), market_id, now)
        # a job loop (jobs/trading_risk.py): each market's resume is its own transaction, its lock released
        await session.commit()
    return opened
