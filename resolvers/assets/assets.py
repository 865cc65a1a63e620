"""Assets: create/edit drafts, lifecycle steps, reads. Reads are Core selects into `AssetRow` dataclasses.

Visibility: COMPLIANCE and ADMIN see every asset; an ISSUER sees their own plus the public ones; everyone
else sees public assets only (PUBLIC_STATUSES). Hidden assets answer NOT_FOUND, not FORBIDDEN.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Forbidden, InvalidTransition, NotFound
from models.assets import Asset, AssetStatus, AssetTransition, AssetType
from models.identity import Role
from resolvers import unit_of_work
from resolvers.assets import asset_page, lifecycle, validation
from resolvers.audit import record
from resolvers.context import Context
from resolvers.pagination import Page, keyset_page

PUBLIC_STATUSES = frozenset(
    {AssetStatus.TOKENIZING, AssetStatus.ACTIVE, AssetStatus.SUSPENDED, AssetStatus.REDEEMING, AssetStatus.RETIRED}
)
STAFF = frozenset({Role.COMPLIANCE.value, Role.ADMIN.value})


@dataclass(slots=True)
class AssetRow:
    id: uuid.UUID
    issuer_id: uuid.UUID
    name: str
    type: AssetType
    status: AssetStatus
    description: str
    jurisdiction: str
    currency: str
    attributes: dict[str, Any]
    review_reason: str | None
    latest_valuation_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


ROW_COLUMNS = (
    Asset.id,
    Asset.issuer_id,
    Asset.name,
    Asset.type,
    Asset.status,
    Asset.description,
    Asset.jurisdiction,
    Asset.currency,
    Asset.attributes,
    Asset.review_reason,
    Asset.latest_valuation_id,
    Asset.created_at,
    Asset.updated_at,
)


def row_of(asset: Asset) -> AssetRow:
    return AssetRow(*(getattr(asset, c.key) for c in ROW_COLUMNS))


class AssetOrder(enum.Enum):
    CREATED_ASC = "CREATED_ASC"
    CREATED_DESC = "CREATED_DESC"
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"
    VALUATION_ASC = "VALUATION_ASC"
    VALUATION_DESC = "VALUATION_DESC"


@dataclass(frozen=True)
class AssetFilter:
    status: AssetStatus | None = None
    type: AssetType | None = None
    issuer_id: uuid.UUID | None = None
    chain_id: int | None = None
    jurisdiction: str | None = None
    search: str | None = None


def can_see(row: AssetRow | Asset, user_id: uuid.UUID | None, roles: frozenset[str]) -> bool:
    return (
        bool(roles & STAFF)
        or row.status in PUBLIC_STATUSES
        or (user_id is not None and row.issuer_id == user_id and Role.ISSUER.value in roles)
    )


def _filters(f: AssetFilter) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if f.status is not None:
        out["status"] = f.status.value
    if f.type is not None:
        out["type"] = f.type.value
    if f.issuer_id is not None:
        out["issuer_id"] = f.issuer_id
    if f.jurisdiction is not None:
        out["jurisdiction"] = f.jurisdiction.strip().upper()
    if f.chain_id is not None:
        out["chain_id"] = f.chain_id
    if f.search:
        term = f.search.strip()
        if len(term) > 100:
            raise BadUserInput("search is limited to 100 characters", field="search")
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        out["search"] = f"%{escaped}%"
    return out


_PUBLIC = sorted(s.value for s in PUBLIC_STATUSES)


def _list_args(ctx: Context, f: AssetFilter, order: AssetOrder) -> dict[str, Any]:
    """What asset_page.fetch_page / fetch_json_page take for this viewer, filter and ordering."""
    viewer = ctx.viewer
    if viewer.roles & STAFF:
        visibility = "all"
    elif Role.ISSUER.value in viewer.roles and viewer.user_id is not None:  # roles first: others' answers
        # do not depend on who they are (server/response_cache.py shares them per role)
        visibility = "public_or_own"
    else:
        visibility = "public"
    column, direction = order.value.rsplit("_", 1)
    from resolvers.assets.loaders import run_sql  # loaders -> valuations -> this module

    return {
        "fetch": partial(run_sql, ctx),
        "order": column,
        "descending": direction == "DESC",
        "filters": _filters(f),
        "visibility": visibility,
        "visible_statuses": _PUBLIC,
        "viewer_id": viewer.user_id if visibility == "public_or_own" else None,
    }


async def list_assets(
    ctx: Context,
    f: AssetFilter,
    order: AssetOrder,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    relations: tuple[str, ...] = (),
) -> Page[Any]:
    """One SQL statement for the page (cached SQL text per shape), with the `relations` of asset_page.RELATIONS
    its caller wants: rows are AssetRow, or (AssetRow, related values) when relations are given."""
    return await asset_page.fetch_page(
        **_list_args(ctx, f, order),
        first=first,
        after=after,
        last=last,
        before=before,
        make_row=AssetRow,
        relations=relations,
    )


async def list_assets_json(
    ctx: Context,
    f: AssetFilter,
    order: AssetOrder,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    nodes: tuple[str, ...],
    joins: tuple[str, ...],
) -> Page[Any]:
    """list_assets' page (the same rows, visibility, cursors and errors), each row a record of its id, sort key
    and the JSON texts of the `nodes` expressions (resolvers/assets/page_json.py)."""
    return await asset_page.fetch_json_page(
        **_list_args(ctx, f, order), first=first, after=after, last=last, before=before, nodes=nodes, joins=joins
    )


async def get_asset_row(ctx: Context, asset_id: uuid.UUID) -> AssetRow:
    session = await ctx.session()
    found = (await session.execute(select(*ROW_COLUMNS).where(Asset.id == asset_id))).first()
    if found is None:
        raise NotFound("asset not found")
    row = AssetRow(*found)
    viewer = ctx.viewer
    own = Role.ISSUER.value in viewer.roles and row.issuer_id == viewer.user_id  # who asks: issuers only
    if not (viewer.roles & STAFF or row.status in PUBLIC_STATUSES or own):
        raise NotFound("asset not found")
    return row


async def lock_asset(session: AsyncSession, asset_id: uuid.UUID, user_id: uuid.UUID, roles: frozenset[str]) -> Asset:
    """The asset, locked for the caller's transaction (state checks must not race)."""
    asset = (await session.execute(select(Asset).where(Asset.id == asset_id).with_for_update())).scalar_one_or_none()
    if asset is None or not can_see(asset, user_id, roles):
        raise NotFound("asset not found")
    return asset


async def create_asset(
    ctx: Context,
    *,
    name: str,
    type: AssetType,
    jurisdiction: str,
    currency: str,
    description: str = "",
    metadata: object = None,  # the client's JSON: validation.metadata checks it is an object
) -> AssetRow:
    user_id = ctx.viewer.require_role(Role.ISSUER.value)
    asset = Asset(
        id=uuid.uuid4(),
        issuer_id=user_id,
        name=validation.name(name),
        type=type,
        status=AssetStatus.DRAFT,
        description=description or "",
        jurisdiction=validation.jurisdiction(jurisdiction),
        currency=validation.currency(currency),
        attributes=validation.metadata(type, metadata),
    )
    session = await ctx.session()
    session.add(asset)
    await session.flush()
    session.add(
        AssetTransition(
            asset_id=asset.id, from_status=None, to_status=AssetStatus.DRAFT, action="create", actor_id=user_id
        )
    )
    record(
        session,
        actor_id=user_id,
        action="asset.create",
        target_type="asset",
        target_id=asset.id,
        request_id=ctx.request_id,
        details={"type": type.value},
    )
    await unit_of_work.commit(session)
    await session.refresh(asset)
    return row_of(asset)


async def update_asset(ctx: Context, asset_id: uuid.UUID, changes: dict[str, Any]) -> AssetRow:
    """Edit a DRAFT (only its issuer). `changes` holds only the fields the caller set."""
    user_id = ctx.viewer.require_role(Role.ISSUER.value)
    session = await ctx.session()
    asset = await lock_asset(session, asset_id, user_id, ctx.viewer.roles)
    if asset.issuer_id != user_id:
        raise Forbidden("only the asset's issuer may edit it")
    if asset.status is not AssetStatus.DRAFT:
        raise InvalidTransition("asset", asset.status.value, AssetStatus.DRAFT.value)
    for required in ("name", "type", "jurisdiction", "currency"):  # an asset always has them: null clears nothing
        if required in changes and changes[required] is None:
            raise BadUserInput(f"{required} cannot be null; leave it out to keep the current value", field=required)
    if "name" in changes:
        asset.name = validation.name(changes["name"])
    if "description" in changes:
        asset.description = changes["description"] or ""
    if "jurisdiction" in changes:
        asset.jurisdiction = validation.jurisdiction(changes["jurisdiction"])
    if "currency" in changes:
        asset.currency = validation.currency(changes["currency"])
    if "type" in changes:
        asset.type = changes["type"]
    if "type" in changes or "metadata" in changes:
        asset.attributes = validation.metadata(asset.type, changes.get("metadata", asset.attributes))
    record(
        session,
        actor_id=user_id,
        action="asset.update",
        target_type="asset",
        target_id=asset.id,
        request_id=ctx.request_id,
        details={"fields": sorted(changes)},
    )
    await unit_of_work.commit(session)
    await session.refresh(asset)
    return row_of(asset)


async def transition(ctx: Context, asset_id: uuid.UUID, action: str, reason: str | None = None) -> AssetRow:
    user_id = ctx.viewer.require_user()
    session = await ctx.session()
    asset = await lock_asset(session, asset_id, user_id, ctx.viewer.roles)
    step = await lifecycle.apply(session, asset, action, user_id, ctx.viewer.roles, reason)
    record(
        session,
        actor_id=user_id,
        action=f"asset.{action}",
        target_type="asset",
        target_id=asset.id,
        request_id=ctx.request_id,
        details={
            "from": step.from_status.value if step.from_status else None,
            "to": step.to_status.value,
            "reason": reason,
        },
    )
    await unit_of_work.commit(session)
    await session.refresh(asset)
    return row_of(asset)


@dataclass(slots=True)
class TransitionRow:
    id: int
    from_status: AssetStatus | None
    to_status: AssetStatus
    action: str
    actor_id: uuid.UUID | None
    reason: str | None
    at: datetime


async def transitions_page(
    session: AsyncSession,
    asset_id: uuid.UUID,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> Page[TransitionRow]:
    cols = (
        AssetTransition.id,
        AssetTransition.from_status,
        AssetTransition.to_status,
        AssetTransition.action,
        AssetTransition.actor_id,
        AssetTransition.reason,
        AssetTransition.at,
    )
    page = await keyset_page(
        session,
        select(*cols).where(AssetTransition.asset_id == asset_id),
        [AssetTransition.id],
        first=first,
        after=after,
        last=last,
        before=before,
        scalars=False,
    )
    return page.map(lambda r: TransitionRow(*r))


async def set_latest_valuation(
    session: AsyncSession, asset_id: uuid.UUID, valuation_id: uuid.UUID, amount: Decimal, currency: str, as_of: date
) -> None:
    await session.execute(
        update(Asset)
        .where(Asset.id == asset_id)
        .values(
            latest_valuation_id=valuation_id,
            latest_valuation_amount=amount,
            latest_valuation_currency=currency,
            latest_valuation_as_of=as_of,
        )
    )
