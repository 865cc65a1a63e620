"""Asset, Valuation, AssetTransition, FxRate and Issuer as GraphQL types, and the asset enums; their fields load
relations through the request's DataLoaders and delegate the rest to resolvers/assets."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import TypeAlias, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from models.assets import AssetAction as AssetActionModel
from models.assets import AssetStatus as AssetStatusModel
from models.assets import AssetType as AssetTypeModel
from models.assets import ValuationMethod as ValuationMethodModel
from resolvers.assets import assets as asset_rules
from resolvers.assets import documents as document_rules
from resolvers.assets import fx, valuations
from resolvers.assets.assets import AssetOrder as AssetOrderModel
from resolvers.assets.assets import AssetRow, TransitionRow
from resolvers.assets.fx import FxRateRow
from resolvers.assets.loaders import IssuerRow, db_lock, loader
from resolvers.assets.validation import trim
from resolvers.assets.valuations import ValuationRow
from schema.documents import AssetDocument
from schema.lean_resolvers import NOT_LOADED, PREFETCHED
from schema.node import Node
from schema.pagination import Connection
from schema.tokens import Token

strawberry.enum(AssetTypeModel)
AssetType: TypeAlias = AssetTypeModel
strawberry.enum(
    AssetStatusModel,
    description="DRAFT -> UNDER_REVIEW -> APPROVED | REJECTED "
    "(-> DRAFT) -> TOKENIZING -> ACTIVE <-> SUSPENDED -> REDEEMING -> RETIRED",
)
AssetStatus: TypeAlias = AssetStatusModel
strawberry.enum(ValuationMethodModel)
ValuationMethod: TypeAlias = ValuationMethodModel
strawberry.enum(
    AssetActionModel,
    description=(
        "A step in an asset's history: create, submit, approve, reject, revise, tokenize, confirm_tokens and "
        "abandon_tokens (the tokenization's outcome), suspend, resume, redeem, retire."
    ),
)
AssetAction: TypeAlias = AssetActionModel
strawberry.enum(AssetOrderModel)
AssetOrder: TypeAlias = AssetOrderModel


@strawberry.type
class Issuer:
    id: uuid.UUID
    email: str


@strawberry.type(description="An appraisal of an asset's value on a date.")
class Valuation(Node):
    asset_id: uuid.UUID
    amount: Decimal
    currency: str
    method: ValuationMethod
    as_of: date
    source: str
    created_at: datetime

    @classmethod
    def from_row(cls, r: ValuationRow) -> Valuation:
        return cls(
            id=r.id,
            asset_id=r.asset_id,
            amount=trim(r.amount),
            currency=r.currency,
            method=r.method,
            as_of=r.as_of,
            source=r.source,
            created_at=r.created_at,
        )

    @strawberry.field(description="The amount in another currency, at the ADMIN-maintained FX rate as of asOf.")
    async def amount_in(self, info: Info, currency: str) -> Decimal:
        async with db_lock(info.context) as session:
            return await fx.convert(session, self.amount, self.currency, currency, self.as_of)


@strawberry.type
class AssetTransition:
    from_status: AssetStatus | None
    to_status: AssetStatus
    action: AssetAction
    actor_id: uuid.UUID | None
    reason: str | None
    at: datetime

    @classmethod
    def from_row(cls, r: TransitionRow) -> AssetTransition:
        return cls(
            from_status=r.from_status,
            to_status=r.to_status,
            action=AssetActionModel(r.action),
            actor_id=r.actor_id,
            reason=r.reason,
            at=r.at,
        )


@strawberry.type
class FxRate:
    base: str
    quote: str
    as_of: date
    rate: Decimal = strawberry.field(description="1 base = rate quote")
    updated_at: datetime

    @classmethod
    def from_row(cls, r: FxRateRow) -> FxRate:
        return cls(base=r.base, quote=r.quote, as_of=r.as_of, rate=trim(r.rate), updated_at=r.updated_at)


def _issuer_from(row: IssuerRow | None) -> Issuer | None:
    return Issuer(id=row.id, email=row.email) if row else None


async def _issuer_of(info: Info, issuer_id: uuid.UUID) -> Issuer | None:
    return _issuer_from(await loader(info.context, "IssuerByIdLoader").load(issuer_id))


async def _latest_of(info: Info, asset_id: uuid.UUID) -> Valuation | None:
    row = await loader(info.context, "LatestValuationByAssetLoader").load(asset_id)
    return Valuation.from_row(row) if row else None


async def _tokens_of(info: Info, asset_id: uuid.UUID) -> list[Token]:
    return [Token.from_row(r) for r in await loader(info.context, "TokensByAssetLoader").load(asset_id)]


@strawberry.type(description="A real-world asset registered by an issuer.")
class Asset(Node):
    name: str
    type: AssetType
    status: AssetStatus
    description: str
    jurisdiction: str
    currency: str
    metadata: JSON
    review_reason: str | None
    created_at: datetime
    updated_at: datetime
    issuer_id: uuid.UUID
    _latest_valuation_id: strawberry.Private[uuid.UUID | None]
    # filled by Query.assets for a whole page at once (through the same DataLoaders), so these fields resolve
    # without one awaitable per row (and without a resolver call: PREFETCHED); NOT_LOADED falls back to the loader
    _issuer: strawberry.Private[Issuer | None] = NOT_LOADED
    _latest: strawberry.Private[Valuation | None] = NOT_LOADED
    _tokens: strawberry.Private[list[Token]] = NOT_LOADED

    @classmethod
    def from_row(cls, r: AssetRow) -> Asset:
        return cls(
            id=r.id,
            name=r.name,
            type=r.type,
            status=r.status,
            description=r.description,
            jurisdiction=r.jurisdiction,
            currency=r.currency,
            metadata=JSON(r.attributes),
            review_reason=r.review_reason,
            created_at=r.created_at,
            updated_at=r.updated_at,
            issuer_id=r.issuer_id,
            _latest_valuation_id=r.latest_valuation_id,
        )

    @property
    def row_id(self) -> uuid.UUID:
        """`id` as the UUID it is built from (Node.id is typed UUID | str)."""
        return cast(uuid.UUID, self.id)

    # sync resolvers that return either the prefetched value or the loader's awaitable (a coroutine, which
    # strawberry awaits; typed as the value, the GraphQL type strawberry reads from the annotation)
    @strawberry.field(metadata={PREFETCHED: "_issuer"})
    def issuer(self, info: Info) -> Issuer | None:
        if self._issuer is not NOT_LOADED:
            return self._issuer
        return _issuer_of(info, self.issuer_id)  # type: ignore[return-value]  # strawberry awaits it

    @strawberry.field(description="The valuation with the newest as-of date.", metadata={PREFETCHED: "_latest"})
    def latest_valuation(self, info: Info) -> Valuation | None:
        if self._latest is not NOT_LOADED or self._latest_valuation_id is None:
            return None if self._latest is NOT_LOADED else self._latest
        return _latest_of(info, self.row_id)  # type: ignore[return-value]  # strawberry awaits it

    @strawberry.field(metadata={PREFETCHED: "_tokens"})
    def tokens(self, info: Info) -> list[Token]:
        if self._tokens is not NOT_LOADED:
            return self._tokens
        return _tokens_of(info, self.row_id)  # type: ignore[return-value]  # strawberry awaits it

    @strawberry.field(description="Valuation history, newest first.")
    async def valuations(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Valuation]:
        async with db_lock(info.context) as session:
            page = await valuations.valuations_page(session, self.row_id, first, after, last, before)
        return Connection.from_page(page, Valuation.from_row)

    @strawberry.field(description="Lifecycle history, oldest first.")
    async def transitions(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[AssetTransition]:
        async with db_lock(info.context) as session:
            page = await asset_rules.transitions_page(session, self.row_id, first, after, last, before)
        return Connection.from_page(page, AssetTransition.from_row)

    @strawberry.field(description="Documents the caller may read, newest first.")
    async def documents(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[AssetDocument]:
        viewer = info.context.viewer
        kinds = document_rules.readable_kinds(self.issuer_id, viewer.user_id, viewer.roles)
        async with db_lock(info.context) as session:
            page = await document_rules.documents_page(session, self.row_id, kinds, first, after, last, before)
        return Connection.from_page(page, AssetDocument.from_row)
