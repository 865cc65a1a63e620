"""FX rates maintained by ADMIN, and conversion of amounts as of a date.

A rate row says 1 `base` = `rate` `quote` from `as_of` on. Converting X -> Y as of D uses the newest row of
X/Y with as_of <= D, else the inverse of the newest Y/X row. No triangulation: a missing pair is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, NotFound
from models.assets import FxRate
from models.identity import Role
from resolvers import unit_of_work
from resolvers.assets import validation
from resolvers.audit import record
from resolvers.context import Context
from resolvers.pagination import Page, keyset_page

QUANTUM = Decimal("1e-18")


@dataclass(slots=True)
class FxRateRow:
    base: str
    quote: str
    as_of: date
    rate: Decimal
    updated_at: datetime


COLUMNS = (FxRate.base, FxRate.quote, FxRate.as_of, FxRate.rate, FxRate.updated_at)


async def set_rate(ctx: Context, base: str, quote: str, as_of: date, rate: Decimal) -> FxRateRow:
    user_id = ctx.viewer.require_role(Role.ADMIN.value)
    base, quote = validation.currency(base, "base"), validation.currency(quote, "quote")
    if base == quote:
        raise BadUserInput("base and quote must differ", field="quote")
    if not Decimal(rate).is_finite() or rate <= 0 or rate >= Decimal(10) ** 20:
        raise BadUserInput("rate must be positive", field="rate")
    if validation.decimal_places(validation.trim(rate)) > 18:  # NUMERIC(38, 18): Postgres rounded the rest away
        raise BadUserInput("rate has more than 18 decimal places", field="rate")
    session = await ctx.session()
    stmt = insert(FxRate).values(base=base, quote=quote, as_of=as_of, rate=rate, set_by=user_id)
    stmt = stmt.on_conflict_do_update(
        index_elements=[FxRate.base, FxRate.quote, FxRate.as_of],
        set_={"rate": rate, "set_by": user_id, "updated_at": datetime.now().astimezone()},
    )
    await session.execute(stmt)
    record(
        session,
        actor_id=user_id,
        action="fx.set_rate",
        target_type="fx_rate",
        target_id=f"{base}/{quote}@{as_of.isoformat()}",
        request_id=ctx.request_id,
        details={"rate": str(rate)},
    )
    await unit_of_work.commit(session)
    found = (
        await session.execute(select(*COLUMNS).where(FxRate.base == base, FxRate.quote == quote, FxRate.as_of == as_of))
    ).one()
    return FxRateRow(*found)


async def rate_on(session: AsyncSession, base: str, quote: str, on: date) -> Decimal:
    if base == quote:
        return Decimal(1)
    rows = (
        await session.execute(
            select(FxRate.base, FxRate.rate)
            .where(
                or_(and_(FxRate.base == base, FxRate.quote == quote), and_(FxRate.base == quote, FxRate.quote == base)),
                FxRate.as_of <= on,
            )
            .order_by(FxRate.as_of.desc(), (FxRate.base == base).desc())
            .limit(1)
        )
    ).first()
    if rows is None:
        raise NotFound(f"no FX rate {base}/{quote} on or before {on.isoformat()}", base=base, quote=quote)
    found_base, rate = rows
    if found_base == base:
        return rate
    with localcontext() as c:
        c.prec = 60
        return Decimal(1) / rate


async def convert(session: AsyncSession, amount: Decimal, currency: str, target: str, on: date) -> Decimal:
    target = validation.currency(target)
    rate = await rate_on(session, currency, target, on)
    with localcontext() as c:
        c.prec = 60
        return validation.trim((amount * rate).quantize(QUANTUM, rounding=ROUND_HALF_EVEN))


async def rates_page(
    session: AsyncSession,
    base: str | None,
    quote: str | None,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> Page[FxRateRow]:
    stmt = select(*COLUMNS)
    if base:
        stmt = stmt.where(FxRate.base == validation.currency(base, "base"))
    if quote:
        stmt = stmt.where(FxRate.quote == validation.currency(quote, "quote"))
    page = await keyset_page(
        session,
        stmt,
        [FxRate.as_of, FxRate.base, FxRate.quote],
        descending=True,
        first=first,
        after=after,
        last=last,
        before=before,
        scalars=False,
    )
    return page.map(lambda r: FxRateRow(*r))
