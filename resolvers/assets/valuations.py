"""Valuations: append-only history per asset; the latest (by as-of date, then entry time) is copied onto
the asset row in the same transaction so lists can order by it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Forbidden, InvalidTransition
from models.assets import Asset, AssetStatus, Valuation, ValuationMethod
from models.identity import Role
from resolvers import unit_of_work
from resolvers.assets import validation
from resolvers.assets.assets import STAFF, lock_asset, set_latest_valuation
from resolvers.audit import record
from resolvers.context import Context
from resolvers.pagination import Page, keyset_page

MAX_AMOUNT = Decimal(10) ** 20  # Numeric(38, 18) holds 20 integer digits
CLOSED = frozenset({AssetStatus.RETIRED})


@dataclass(slots=True)
class ValuationRow:
    id: uuid.UUID
    asset_id: uuid.UUID
    amount: Decimal
    currency: str
    method: ValuationMethod
    as_of: date
    source: str
    created_at: datetime


COLUMNS = (
    Valuation.id,
    Valuation.asset_id,
    Valuation.amount,
    Valuation.currency,
    Valuation.method,
    Valuation.as_of,
    Valuation.source,
    Valuation.created_at,
)


def _amount(raw: Decimal) -> Decimal:
    try:
        value = Decimal(raw)
    except (InvalidOperation, TypeError) as exc:
        raise BadUserInput("amount must be a decimal number", field="amount") from exc
    if not value.is_finite() or value <= 0 or value >= MAX_AMOUNT:
        raise BadUserInput("amount must be positive and below 1e20", field="amount")
    if validation.decimal_places(value) > 18:
        raise BadUserInput("amount has more than 18 decimal places", field="amount")
    return value


async def add_valuation(
    ctx: Context, asset_id: uuid.UUID, amount: Decimal, currency: str, method: ValuationMethod, as_of: date, source: str
) -> ValuationRow:
    """The asset's issuer or staff record a valuation; the asset's latest moves if this one is newer."""
    user_id = ctx.viewer.require_user()
    roles = ctx.viewer.roles
    session = await ctx.session()
    asset = await lock_asset(session, asset_id, user_id, roles)
    if not (roles & STAFF or (asset.issuer_id == user_id and Role.ISSUER.value in roles)):
        raise Forbidden("only the asset's issuer or staff may add valuations")
    if asset.status in CLOSED:
        raise InvalidTransition("asset", asset.status.value, asset.status.value)
    source = source.strip()
    if not 1 <= len(source) <= 200:
        raise BadUserInput("source must have 1 to 200 characters", field="source")
    validation.past_day(as_of, "asOf")
    valuation = Valuation(
        id=uuid.uuid4(),
        asset_id=asset.id,
        amount=_amount(amount),
        currency=validation.currency(currency),
        method=method,
        as_of=as_of,
        source=source,
        created_by=user_id,
    )
    session.add(valuation)
    await session.flush()
    if asset.latest_valuation_as_of is None or as_of >= asset.latest_valuation_as_of:
        await set_latest_valuation(session, asset.id, valuation.id, valuation.amount, valuation.currency, as_of)
    record(
        session,
        actor_id=user_id,
        action="asset.add_valuation",
        target_type="asset",
        target_id=asset.id,
        request_id=ctx.request_id,
        details={
            "valuation": str(valuation.id),
            "amount": str(valuation.amount),
            "currency": valuation.currency,
            "asOf": as_of.isoformat(),
        },
    )
    await unit_of_work.commit(session)
    await session.refresh(valuation)
    return ValuationRow(*(getattr(valuation, c.key) for c in COLUMNS))


async def valuations_page(
    session: AsyncSession,
    asset_id: uuid.UUID,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> Page[ValuationRow]:
    """Newest first: (as_of, created_at, id) descending."""
    key = [Valuation.as_of, Valuation.created_at, Valuation.id]
    page = await keyset_page(
        session,
        select(*COLUMNS).where(Valuation.asset_id == asset_id),
        key,
        descending=True,
        first=first,
        after=after,
        last=last,
        before=before,
        scalars=False,
    )
    return page.map(lambda r: ValuationRow(*r))


async def valuations_by_ids(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, ValuationRow]:
    rows = (await session.execute(select(*COLUMNS).where(Valuation.id.in_(ids)))).all()
    return {r[0]: ValuationRow(*r) for r in rows}


async def latest_for_asset(session: AsyncSession, asset_id: uuid.UUID) -> ValuationRow | None:
    found = (
        await session.execute(
            select(*COLUMNS).join(Asset, Asset.latest_valuation_id == Valuation.id).where(Asset.id == asset_id)
        )
    ).first()
    return ValuationRow(*found) if found else None
