"""Assets, their lifecycle, valuations and FX rates. Types and fields only; the work is in resolvers/assets."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeAlias, cast

import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode
from strawberry.scalars import JSON
from strawberry.types import Info

from models.assets import AssetAction as AssetActionModel
from models.assets import AssetStatus as AssetStatusModel
from models.assets import AssetType as AssetTypeModel
from models.assets import ValuationMethod as ValuationMethodModel
from models.identity import Role
from resolvers.assets import assets as asset_rules
from resolvers.assets import documents as document_rules
from resolvers.assets import fx, tokenization, valuations
from resolvers.assets.assets import AssetFilter as AssetFilterRow
from resolvers.assets.assets import AssetOrder as AssetOrderModel
from resolvers.assets.assets import AssetRow, TransitionRow
from resolvers.assets.fx import FxRateRow
from resolvers.assets.loaders import IssuerRow, db_lock, loader, valuation_row
from resolvers.assets.token_reads import token_row
from resolvers.assets.validation import trim
from resolvers.assets.valuations import ValuationRow
from resolvers.pagination import Page
from schema.documents import AssetDocument
from schema.lean_resolvers import NOT_LOADED, PREFETCHED
from schema.lookups import found
from schema.mutations import mutation
from schema.node import Node, register_node
from schema.pagination import Connection
from schema.permissions import authenticated, requires
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


@strawberry.input
class AssetFilter:
    status: AssetStatus | None = None
    type: AssetType | None = None
    issuer_id: uuid.UUID | None = None
    chain_id: int | None = strawberry.field(default=None, description="Assets with a token on this chain.")
    jurisdiction: str | None = None
    search: str | None = strawberry.field(default=None, description="Case-insensitive substring of the name.")


@strawberry.input
class CreateAssetInput:
    name: str
    type: AssetType
    jurisdiction: str = strawberry.field(description="ISO 3166-1 alpha-2")
    currency: str = strawberry.field(description="ISO 4217")
    description: str = ""
    metadata: JSON | None = strawberry.field(default=None, description="Type-specific fields, validated per type.")


@strawberry.input
class UpdateAssetInput:
    name: str | None = strawberry.UNSET
    type: AssetType | None = strawberry.UNSET
    jurisdiction: str | None = strawberry.UNSET
    currency: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    metadata: JSON | None = strawberry.UNSET


@strawberry.input
class AddValuationInput:
    asset_id: uuid.UUID
    amount: Decimal
    currency: str
    method: ValuationMethod
    as_of: date
    source: str


@strawberry.input(description="Deploy the project's SecurityToken with the platform deployer key.")
class DeployTokenInput:
    name: str
    symbol: str
    decimals: int = 18
    identity_registry: str | None = strawberry.field(
        default=None, description="Existing registry; default: deploy a new one."
    )


@strawberry.type
class TokenizationResult:
    asset: Asset
    token: Token


@strawberry.type
class Query:
    @strawberry.field(
        extensions=authenticated(), description="An asset; null when missing or not visible to the caller."
    )
    async def asset(self, info: Info, id: uuid.UUID) -> Asset | None:
        async with db_lock(info.context):
            row = await found(asset_rules.get_asset_row(info.context, id))
        return None if row is None else Asset.from_row(row)

    @strawberry.field(extensions=authenticated(), description="Assets visible to the caller; keyset-paginated.")
    async def assets(
        self,
        info: Info,
        filter: AssetFilter | None = None,
        order_by: AssetOrder = AssetOrderModel.CREATED_DESC,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Asset]:
        f = AssetFilterRow(**vars(filter)) if filter is not None else AssetFilterRow()
        wanted = node_fields(info)
        relations = tuple(r for name, r in _RELATIONS.items() if name in wanted)
        page = await asset_rules.list_assets(info.context, f, order_by, first, after, last, before, relations)
        nodes = [_with_relations(*r) for r in page.rows] if relations else [Asset.from_row(r) for r in page.rows]
        return Connection.from_page(Page(nodes, page.cursors, page.has_next_page, page.has_previous_page), lambda n: n)

    @strawberry.field(extensions=authenticated(), description="FX rates, newest as-of first.")
    async def fx_rates(
        self,
        info: Info,
        base: str | None = None,
        quote: str | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[FxRate]:
        async with db_lock(info.context) as session:
            page = await fx.rates_page(session, base, quote, first, after, last, before)
        return Connection.from_page(page, FxRate.from_row)

    @strawberry.field(extensions=authenticated(), description="Convert an amount at the rate in force on a date.")
    async def convert_amount(
        self, info: Info, amount: Decimal, from_currency: str, to_currency: str, as_of: date
    ) -> Decimal:
        async with db_lock(info.context) as session:
            from resolvers.assets.validation import currency

            return await fx.convert(session, amount, currency(from_currency, "fromCurrency"), to_currency, as_of)


def node_fields(info: Info) -> set[str]:
    """Names selected under `edges { node { ... } }` of this connection field (fragments included)."""
    raw = info._raw_info
    out: set[str] = set()
    walked: set[tuple[int, tuple[str, ...]]] = set()  # a selection set is walked once per path, however often spread

    def walk(selection_set, path: tuple[str, ...]) -> None:
        if selection_set is None or (id(selection_set), path) in walked:
            return
        walked.add((id(selection_set), path))
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                name = sel.name.value
                if path == ("edges", "node"):
                    out.add(name)
                elif len(path) < 2 and name == ("edges", "node")[len(path)]:
                    walk(sel.selection_set, (*path, name))
            elif isinstance(sel, InlineFragmentNode):
                walk(sel.selection_set, path)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value in raw.fragments:
                walk(raw.fragments[sel.name.value].selection_set, path)

    for node in raw.field_nodes:
        walk(node.selection_set, ())
    return out


# Asset field -> relation loaded with the page (resolvers/assets/asset_page.RELATIONS): the rows its DataLoader
# (IssuerByIdLoader, LatestValuationByAssetLoader, TokensByAssetLoader) would give
_RELATIONS = {"issuer": "issuer", "latestValuation": "latest", "tokens": "tokens"}


def _with_relations(row: AssetRow, related: dict[str, Any]) -> Asset:
    node = Asset.from_row(row)
    if "issuer" in related:
        issuer = related["issuer"]
        node._issuer = None if issuer is None else Issuer(id=issuer[0], email=issuer[1])
    if "latest" in related:
        latest = related["latest"]
        node._latest = None if latest is None else Valuation.from_row(valuation_row(latest))
    if "tokens" in related:
        node._tokens = [Token.from_row(token_row(t)) for t in related["tokens"]]
    return node


def _changes(data: UpdateAssetInput) -> dict[str, object]:
    return {k: v for k, v in vars(data).items() if v is not strawberry.UNSET}


@strawberry.type
class Mutation:
    @mutation(extensions=requires(Role.ISSUER), description="Create a DRAFT asset owned by the caller.")
    async def create_asset(self, info: Info, input: CreateAssetInput) -> Asset:
        return Asset.from_row(
            await asset_rules.create_asset(
                info.context,
                name=input.name,
                type=input.type,
                jurisdiction=input.jurisdiction,
                currency=input.currency,
                description=input.description,
                metadata=input.metadata,
            )
        )

    @mutation(extensions=requires(Role.ISSUER), description="Edit a DRAFT (its issuer only).")
    async def update_asset(self, info: Info, id: uuid.UUID, input: UpdateAssetInput) -> Asset:
        return Asset.from_row(await asset_rules.update_asset(info.context, id, _changes(input)))

    @mutation(extensions=requires(Role.ISSUER), description="DRAFT -> UNDER_REVIEW (its issuer).")
    async def submit_asset(self, info: Info, id: uuid.UUID) -> Asset:
        return Asset.from_row(await asset_rules.transition(info.context, id, "submit"))

    @mutation(extensions=requires(Role.COMPLIANCE), description="UNDER_REVIEW -> APPROVED.")
    async def approve_asset(self, info: Info, id: uuid.UUID, reason: str | None = None) -> Asset:
        return Asset.from_row(await asset_rules.transition(info.context, id, "approve", reason))

    @mutation(extensions=requires(Role.COMPLIANCE), description="UNDER_REVIEW -> REJECTED (reason needed).")
    async def reject_asset(self, info: Info, id: uuid.UUID, reason: str) -> Asset:
        return Asset.from_row(await asset_rules.transition(info.context, id, "reject", reason))

    @mutation(extensions=requires(Role.ISSUER), description="REJECTED -> DRAFT, to edit and resubmit.")
    async def revise_asset(self, info: Info, id: uuid.UUID) -> Asset:
        return Asset.from_row(await asset_rules.transition(info.context, id, "revise"))

    @mutation(extensions=requires(Role.COMPLIANCE, Role.ADMIN), description="ACTIVE -> SUSPENDED.")
    async def suspend_asset(self, info: Info, id: uuid.UUID, reason: str) -> Asset:
        return Asset.from_row(await asset_rules.transition(info.context, id, "suspend", reason))

    @mutation(extensions=requires(Role.COMPLIANCE, Role.ADMIN), description="SUSPENDED -> ACTIVE.")
    async def resume_asset(self, info: Info, id: uuid.UUID) -> Asset:
        return Asset.from_row(await asset_rules.transition(info.context, id, "resume"))

    @mutation(
        extensions=requires(Role.ISSUER, Role.ADMIN),
        description="ACTIVE | SUSPENDED -> REDEEMING (its issuer or ADMIN).",
    )
    async def start_asset_redemption(self, info: Info, id: uuid.UUID, reason: str | None = None) -> Asset:
        return Asset.from_row(await asset_rules.transition(info.context, id, "redeem", reason))

    @mutation(extensions=requires(Role.ADMIN), description="REDEEMING -> RETIRED.")
    async def retire_asset(self, info: Info, id: uuid.UUID) -> Asset:
        return Asset.from_row(await asset_rules.transition(info.context, id, "retire"))

    @mutation(
        extensions=requires(Role.ISSUER, Role.ADMIN),
        result="tokenization",
        description=(
            "APPROVED -> TOKENIZING -> ACTIVE. Pass `address` to register an existing contract (checked on chain), "
            "or `deploy` to deploy the project's SecurityToken. Waits for the deployment receipt."
        ),
    )
    async def tokenize_asset(
        self,
        info: Info,
        asset_id: uuid.UUID,
        chain_id: int,
        address: str | None = None,
        deploy: DeployTokenInput | None = None,
    ) -> TokenizationResult:
        request = (
            tokenization.DeployRequest(deploy.name, deploy.symbol, deploy.decimals, deploy.identity_registry)
            if deploy
            else None
        )
        row, token_id = await tokenization.tokenize_asset(
            info.context, asset_id, chain_id, address=address, deploy=request
        )
        from resolvers.assets.token_reads import get_token

        async with db_lock(info.context) as session:
            token = await get_token(session, token_id)
        return TokenizationResult(asset=Asset.from_row(row), token=Token.from_row(token))

    @mutation(
        extensions=requires(Role.ISSUER, Role.COMPLIANCE, Role.ADMIN),
        description="Record a valuation (the asset's issuer or staff).",
    )
    async def add_valuation(self, info: Info, input: AddValuationInput) -> Valuation:
        return Valuation.from_row(
            await valuations.add_valuation(
                info.context, input.asset_id, input.amount, input.currency, input.method, input.as_of, input.source
            )
        )

    @mutation(extensions=requires(Role.ADMIN), description="Set 1 base = rate quote from asOf on.")
    async def set_fx_rate(self, info: Info, base: str, quote: str, as_of: date, rate: Decimal) -> FxRate:
        return FxRate.from_row(await fx.set_rate(info.context, base, quote, as_of, rate))


async def load_asset(info: Info, id: uuid.UUID) -> Asset | None:
    """`node(id)` for an Asset: what `asset(id)` shows (signed-in callers; DRAFT and under-review ones only to
    their issuer and staff)."""
    if not info.context.viewer.authenticated:
        return None
    async with db_lock(info.context):
        row = await found(asset_rules.get_asset_row(info.context, id))
    return None if row is None else Asset.from_row(row)


async def load_valuation(info: Info, id: uuid.UUID) -> Valuation | None:
    """`node(id)` for a Valuation: visible with its asset (`Asset.valuations`)."""
    if not info.context.viewer.authenticated:
        return None
    async with db_lock(info.context) as session:
        row = (await valuations.valuations_by_ids(session, [id])).get(id)
        if row is None or await found(asset_rules.get_asset_row(info.context, row.asset_id)) is None:
            return None
    return Valuation.from_row(row)


register_node("Asset", "assets", load_asset)
register_node("Valuation", "valuations", load_valuation)
