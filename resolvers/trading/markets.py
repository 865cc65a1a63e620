"""Markets: ADMIN opens one per ACTIVE security token and stablecoin quote currency; status OPEN | HALTED | CLOSED."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict, NotFound
from models.assets import Asset, AssetStatus
from models.tokens import Token, TokenKind
from models.trading import Market, MarketRiskLimits, MarketStatus
from resolvers import unit_of_work
from resolvers.audit import record
from resolvers.context import Context
from resolvers.trading.book import lock_market

MAX_FEE_BPS = 1000  # 10 %
MAX_SYMBOL_CHARS = 50  # markets.symbol is VARCHAR(50)
MONEY_LIMIT = Decimal(10) ** 20  # Money columns are NUMERIC(38, 18): 20 digits before the point
MONEY_SCALE = 18  # ... and 18 after it


@dataclass(frozen=True)
class MarketSpec:
    token_id: uuid.UUID
    quote_currency: str
    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal = Decimal(0)
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    symbol: str | None = None


def _places(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -int(exp))


def check_money_scale(name: str, value: Decimal) -> None:
    """Money columns keep MONEY_SCALE decimals and Postgres rounds the rest away without a word: a risk limit of
    1E-28 was stored (and enforced) as 0, a minNotional of 1.0000000000000000001 as 1. Trailing zeros are fine;
    counted on the digits as written (normalize() would round a 39-digit value in the default context)."""
    if not value.is_finite() or value.is_zero():
        return
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    trailing = len(digits) - len(bytes(digits).rstrip(b"\0"))  # digits are 0-9: a zero digit is byte 0
    if -(exponent + trailing) > MONEY_SCALE:
        raise BadUserInput(f"{name} has more than {MONEY_SCALE} decimal places", field=name)


def check_storable(spec: MarketSpec) -> None:
    """What the markets row cannot hold is the client's error, not the database's: a 51-character symbol or a tick
    size of 1E+25 failed the INSERT and came back INTERNAL (found by the fuzz gate)."""
    if spec.symbol is not None and not (
        spec.symbol.strip() and len(spec.symbol) <= MAX_SYMBOL_CHARS and spec.symbol.isprintable()
    ):
        raise BadUserInput(f"symbol must be 1 to {MAX_SYMBOL_CHARS} printable characters", field="symbol")
    for name, value in (("tickSize", spec.tick_size), ("lotSize", spec.lot_size), ("minNotional", spec.min_notional)):
        if value.is_finite() and abs(value) >= MONEY_LIMIT:
            raise BadUserInput(f"{name} must be below 1E+20", field=name)
        check_money_scale(name, value)


def validate_spec(spec: MarketSpec, decimals: int) -> None:
    for name, value in (("tickSize", spec.tick_size), ("lotSize", spec.lot_size)):
        if not value.is_finite() or value <= 0:
            raise BadUserInput(f"{name} must be positive", field=name)
    if not spec.min_notional.is_finite() or spec.min_notional < 0:
        raise BadUserInput("minNotional must not be negative", field="minNotional")
    # price x quantity must be exact in the ledger's 18 decimal places
    if _places(spec.tick_size) + _places(spec.lot_size) > 18:
        raise BadUserInput("tickSize and lotSize together may have at most 18 decimal places", field="lotSize")
    # quantities convert to whole token units on chain
    if _places(spec.lot_size) > decimals:
        raise BadUserInput(f"lotSize needs more than the token's {decimals} decimals", field="lotSize")
    for name, bps in (("makerFeeBps", spec.maker_fee_bps), ("takerFeeBps", spec.taker_fee_bps)):
        if not 0 <= bps <= MAX_FEE_BPS:
            raise BadUserInput(f"{name} must be between 0 and {MAX_FEE_BPS}", field=name)


async def open_market(ctx: Context, spec: MarketSpec) -> Market:
    actor = ctx.viewer.require_user()
    check_storable(spec)
    session = await ctx.session()
    token = await session.get(Token, spec.token_id)
    if token is None:
        raise NotFound("token not found", field="tokenId")
    if token.kind is not TokenKind.SECURITY:
        raise BadUserInput("markets trade security tokens", field="tokenId")
    asset = await session.get(Asset, token.asset_id) if token.asset_id else None
    if asset is None or asset.status is not AssetStatus.ACTIVE:
        raise Conflict("the token's asset is not ACTIVE", reason="ASSET_NOT_ACTIVE")
    quote = spec.quote_currency.strip().upper()
    stable = (
        await session.execute(
            select(Token.id).where(Token.kind == TokenKind.STABLECOIN, Token.symbol == quote).limit(1)
        )
    ).scalar_one_or_none()
    if stable is None:
        raise BadUserInput(f"{quote!r} is not a known stablecoin", field="quoteCurrency")
    validate_spec(spec, token.decimals)
    market = Market(
        id=uuid.uuid4(),
        symbol=spec.symbol or f"{token.symbol or token.address[:8]}/{quote}",
        base_token_id=token.id,
        chain_id=token.chain_id,
        token_address=token.address,
        base_decimals=token.decimals,
        quote_currency=quote,
        tick_size=spec.tick_size,
        lot_size=spec.lot_size,
        min_notional=spec.min_notional,
        maker_fee_bps=spec.maker_fee_bps,
        taker_fee_bps=spec.taker_fee_bps,
        status=MarketStatus.OPEN,
        book_sequence=0,
    )
    session.add(market)
    record(
        session,
        actor_id=actor,
        action="market.open",
        target_type="market",
        target_id=market.id,
        request_id=ctx.request_id,
        details={"symbol": market.symbol},
    )
    try:
        await unit_of_work.commit(session)
    except IntegrityError as exc:
        await session.rollback()
        raise _duplicate(exc, market.symbol, quote) from exc
    return market


def _duplicate(exc: IntegrityError, symbol: str, quote: str) -> Conflict:
    """Name what collided: the symbol (another token's market may hold it) or this token's market in `quote`."""
    constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None) or str(exc.orig)
    if "symbol" in constraint:
        return Conflict(
            f"the market symbol {symbol!r} is taken; pass another `symbol`", reason="DUPLICATE_SYMBOL", field="symbol"
        )
    return Conflict(f"this token already has a market in {quote}", reason="DUPLICATE_MARKET", field="quoteCurrency")


async def set_status(ctx: Context, market_id: uuid.UUID, status: MarketStatus) -> Market:
    return await set_status_in(await ctx.session(), ctx.viewer.require_user(), ctx.request_id, market_id, status)


async def set_status_in(
    session: AsyncSession, actor: uuid.UUID, request_id: str | None, market_id: uuid.UUID, status: MarketStatus
) -> Market:
    """`set_status` on a given session (schema/trading.py closes a market on a session of its own with
    resolvers/trading/sequencer.detached, so the cancellations' events are published even if the caller goes away)."""
    await lock_market(session, market_id)  # serialized with placements, which read the status under this lock
    market = (
        await session.execute(select(Market).where(Market.id == market_id).with_for_update())
    ).scalar_one_or_none()
    if market is None:
        raise NotFound("market not found")
    if market.status is MarketStatus.CLOSED and status is not MarketStatus.CLOSED:
        raise Conflict("a CLOSED market stays closed", reason="MARKET_CLOSED")
    previous = market.status
    market.status = status
    # any halt (circuit breaker, kill switch) ends with this decision
    await session.execute(
        update(MarketRiskLimits)
        .where(MarketRiskLimits.market_id == market_id)
        .values(halted_until=None, halt_reason=None)
    )
    record(
        session,
        actor_id=actor,
        action="market.status",
        target_type="market",
        target_id=market.id,
        request_id=request_id,
        details={"from": previous.value, "to": status.value},
    )
    await unit_of_work.commit(session)
    return market


async def get_market(session: AsyncSession, market_id: uuid.UUID) -> Market:
    market = await session.get(Market, market_id)
    if market is None:
        raise NotFound("market not found", field="marketId")
    return market


async def list_markets(session: AsyncSession, status: MarketStatus | None = None) -> list[Market]:
    stmt = select(Market).order_by(Market.symbol)
    if status is not None:
        stmt = stmt.where(Market.status == status)
    return list((await session.execute(stmt)).scalars())
