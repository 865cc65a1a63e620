"""The asset mutations (lifecycle, tokenization, valuations, FX rates) and their inputs. Arguments in, the
work in resolvers/assets, the types of schema/asset_types out."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from models.identity import Role
from resolvers.assets import assets as asset_rules
from resolvers.assets import fx, tokenization, valuations
from resolvers.assets.loaders import db_lock
from schema.asset_types import Asset, AssetType, FxRate, Valuation, ValuationMethod
from schema.mutations import mutation
from schema.permissions import requires
from schema.tokens import Token


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
