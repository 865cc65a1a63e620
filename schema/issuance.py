"""Primary issuance: offerings, subscriptions, direct issuance and redemption (resolvers/issuance).

Thin glue: each mutation builds the actor and runs the domain function in its unit of work (schema/mutations.py:
one commit, re-run on a transient database conflict); the offering's new state is published on `offerings:<id>`
for `offeringUpdates` after the commit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias

import strawberry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from core.errors import NotFound
from models.identity import KycCase, Role
from models.issuance import AllocationRule as AllocationRuleModel
from models.issuance import IssuanceKind as IssuanceKindModel
from models.issuance import IssuanceState as IssuanceStateModel
from models.issuance import Offering as OfferingModel
from models.issuance import OfferingState as OfferingStateModel
from models.issuance import OfferingSubscription as SubscriptionModel
from models.issuance import SubscriptionReason as SubscriptionReasonModel
from models.issuance import SubscriptionState as SubscriptionStateModel
from models.issuance import TokenIssuance as TokenIssuanceModel
from resolvers.assets.validation import trim
from resolvers.audit import record
from resolvers.issuance import closing, direct, offerings, subscriptions, visibility
from resolvers.issuance.offerings import Actor
from resolvers.pagination import keyset_page
from resolvers.unit_of_work import UnitOfWork
from schema.mutations import after_commit, mutation
from schema.node import Node, register_node
from schema.pagination import Connection
from schema.permissions import authenticated, requires
from schema.sharing import PRIVATE  # who may see an offering depends on the caller

strawberry.enum(
    OfferingStateModel, description="DRAFT -> OPEN -> CLOSED -> ALLOCATED -> SETTLED, or CANCELED before allocation."
)
OfferingState: TypeAlias = OfferingStateModel
strawberry.enum(AllocationRuleModel, description="How an oversubscribed offering is shared.")
AllocationRule: TypeAlias = AllocationRuleModel
strawberry.enum(SubscriptionStateModel, name="OfferingSubscriptionState")
SubscriptionState: TypeAlias = SubscriptionStateModel
strawberry.enum(
    SubscriptionReasonModel,
    name="OfferingSubscriptionReason",
    description=(
        "Why a subscription is REJECTED (at subscription: OFFERING_NOT_OPEN, OFFERING_NOT_STARTED, OFFERING_CLOSED, "
        "KYC_NOT_APPROVED, COUNTRY_NOT_ELIGIBLE, NOT_ACCREDITED, NO_VERIFIED_WALLET, MAX_TICKET_EXCEEDED, "
        "CAP_REACHED, INSUFFICIENT_CASH; at close: WALLET_NOT_VERIFIED), CANCELED (USER_CANCELED, ISSUER_CANCELED, "
        "TARGET_NOT_REACHED), UNALLOCATED (NOT_ALLOCATED) or FAILED (MINT_FAILED, see failureDetail)."
    ),
)
SubscriptionReason: TypeAlias = SubscriptionReasonModel
strawberry.enum(IssuanceKindModel)
IssuanceKind: TypeAlias = IssuanceKindModel
strawberry.enum(IssuanceStateModel)
IssuanceState: TypeAlias = IssuanceStateModel
STAFF = (Role.ADMIN.value, Role.COMPLIANCE.value)


@strawberry.type(description="A primary offering of new tokens of an ACTIVE security token at a fixed price.")
class Offering(Node):
    token_id: uuid.UUID
    asset_id: uuid.UUID
    issuer_id: uuid.UUID
    chain_id: int
    token_address: str
    name: str
    quote_currency: str
    price: Decimal = strawberry.field(description="Per whole token, in the quote currency.")
    lot_size: Decimal = strawberry.field(description="Allocations are whole lots of this many tokens.")
    min_ticket: Decimal
    max_ticket: Decimal | None = strawberry.field(description="Per investor, all their subscriptions together.")
    target: Decimal = strawberry.field(
        description="Below this at close (in allocatable lots) the offering is CANCELED and every reservation released."
    )
    hard_cap: Decimal
    opens_at: datetime
    closes_at: datetime
    eligible_countries: list[str] | None = strawberry.field(description="Investor countries allowed (null: any).")
    accredited_only: bool
    allocation_rule: AllocationRule
    fee_bps: int
    state: OfferingState
    subscribed_total: Decimal = strawberry.field(description="Cash of the ACTIVE subscriptions.")
    subscription_count: int
    allocated_total: Decimal
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, o: OfferingModel) -> Offering:
        n = trim
        return cls(
            id=o.id,
            token_id=o.token_id,
            asset_id=o.asset_id,
            issuer_id=o.issuer_id,
            chain_id=o.chain_id,
            token_address=o.token_address,
            name=o.name,
            quote_currency=o.quote_currency,
            price=n(o.price),
            lot_size=n(o.lot_size),
            min_ticket=n(o.min_ticket),
            max_ticket=None if o.max_ticket is None else n(o.max_ticket),
            target=n(o.target),
            hard_cap=n(o.hard_cap),
            opens_at=o.opens_at,
            closes_at=o.closes_at,
            eligible_countries=o.eligible_countries,
            accredited_only=o.accredited_only,
            allocation_rule=o.allocation_rule,
            fee_bps=o.fee_bps,
            state=o.state,
            subscribed_total=n(o.subscribed_total),
            subscription_count=o.subscription_count,
            allocated_total=n(o.allocated_total),
            created_at=o.created_at,
            updated_at=o.updated_at,
        )


@strawberry.type(
    description="An investor's subscription. A refusal is a REJECTED subscription with its `reason`, not an error."
)
class OfferingSubscription(Node):
    offering_id: uuid.UUID
    user_id: uuid.UUID
    client_key: str | None
    amount: Decimal
    wallet_address: str | None
    state: SubscriptionState
    reason: SubscriptionReason | None
    failure_detail: str | None = strawberry.field(
        description="For a FAILED subscription: what the chain reported about its mint; null otherwise."
    )
    allocated_quantity: Decimal
    allocated_units: str = strawberry.field(description="Raw token units minted (decimal integer string).")
    allocated_cash: Decimal
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: SubscriptionModel) -> OfferingSubscription:
        reason, detail = _reason(s.reason)
        return cls(
            id=s.id,
            offering_id=s.offering_id,
            user_id=s.user_id,
            client_key=s.client_key,
            amount=trim(s.amount),
            wallet_address=s.wallet_address,
            state=s.state,
            reason=reason,
            failure_detail=detail,
            allocated_quantity=trim(s.allocated_quantity),
            allocated_units=str(int(s.allocated_units)),
            allocated_cash=trim(s.allocated_cash),
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


def _reason(raw: str | None) -> tuple[SubscriptionReasonModel | None, str | None]:
    """The stored reason as a code, and the failure text a FAILED mint stores in its place."""
    if raw is None:
        return None, None
    try:
        return SubscriptionReasonModel(raw), None
    except ValueError:
        return SubscriptionReasonModel.MINT_FAILED, raw


@strawberry.type(description="A direct issuance (mint to named investors) or a redemption (burn).")
class TokenIssuance(Node):
    kind: IssuanceKind
    token_id: uuid.UUID
    chain_id: int
    state: IssuanceState
    total_quantity: Decimal
    reason: str | None
    requested_by: uuid.UUID
    decided_by: uuid.UUID | None
    created_at: datetime

    @classmethod
    def of(cls, i: TokenIssuanceModel) -> TokenIssuance:
        return cls(
            id=i.id,
            kind=i.kind,
            token_id=i.token_id,
            chain_id=i.chain_id,
            state=i.state,
            total_quantity=trim(i.total_quantity),
            reason=i.reason,
            requested_by=i.requested_by,
            decided_by=i.decided_by,
            created_at=i.created_at,
        )


def _actor(info: Info) -> Actor:
    v = info.context.viewer
    return Actor(v.user_id, frozenset(v.roles), info.context.request_id)


async def _unit(info: Info, work: Any) -> Any:
    """`work(session)` in the mutation's unit of work (schema/mutations.py: one commit, re-run on a transient
    conflict); the offering it changed is published on `offerings:<id>` once that commits."""
    session: AsyncSession = await info.context.session()
    result = await work(session)
    if isinstance(result, (OfferingModel, SubscriptionModel, TokenIssuanceModel)):
        await session.flush()
        await session.refresh(result)  # server-set columns (updated_at) expired at flush
    offering = result if isinstance(result, OfferingModel) else None
    if isinstance(result, SubscriptionModel):
        offering = await session.get(OfferingModel, result.offering_id)
    if offering is not None:
        message = json.dumps(visibility.event(offering)).encode()
        channel = visibility.channel(offering.id)
        after_commit(info, lambda: visibility.publish_event(info.context.services.pubsub, channel, message))
    return result


@strawberry.input(description="A new offering (DRAFT until opened).")
class CreateOfferingInput:
    token_id: uuid.UUID
    name: str
    quote_currency: str = strawberry.field(description="The stablecoin investors pay in (ledger currency).")
    price: Decimal = strawberry.field(description="Per whole token.")
    min_ticket: Decimal
    target: Decimal
    hard_cap: Decimal
    opens_at: datetime
    closes_at: datetime
    allocation_rule: AllocationRule
    lot_size: Decimal = strawberry.field(default=Decimal(1), description="Whole tokens per lot (default 1).")
    max_ticket: Decimal | None = None
    eligible_countries: list[str] | None = strawberry.field(
        default=None, description="ISO 3166-1 alpha-2; null for any country."
    )
    accredited_only: bool = False
    fee_bps: int = strawberry.field(default=0, description="Platform fee on the raised cash, in basis points.")


@strawberry.input
class SubscribeInput:
    offering_id: uuid.UUID
    amount: Decimal = strawberry.field(description="Cash to subscribe, reserved at once.")
    client_key: str | None = strawberry.field(
        default=None,
        description=(
            "Idempotency key per investor and offering, 1 to 64 visible characters (no spaces or control "
            "characters); another amount under it: IDEMPOTENCY_KEY_REUSED."
        ),
    )


@strawberry.input
class IssuanceAllocationInput:
    user_id: uuid.UUID
    amount: Decimal = strawberry.field(description="Whole tokens (up to the token's decimals).")


@strawberry.input
class IssueTokensInput:
    token_id: uuid.UUID
    allocations: list[IssuanceAllocationInput]
    client_key: str | None = None


@strawberry.input
class RedeemTokensInput:
    token_id: uuid.UUID
    user_id: uuid.UUID
    amount: Decimal
    client_key: str | None = None


@strawberry.type
class Query:
    @strawberry.field(
        extensions=authenticated(),
        description=(
            "Offerings, newest first. Investors see OPEN offerings they are eligible for (KYC, country, accreditation) "
            "and those they subscribed to; issuers also see their own; ADMIN and COMPLIANCE see all."
        ),
    )
    async def offerings(
        self,
        info: Info,
        state: OfferingState | None = None,
        token_id: uuid.UUID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Offering]:
        session = await info.context.session()
        stmt = await visibility.visible_offerings(session, _actor(info))
        if state is not None:
            stmt = stmt.where(OfferingModel.state == state)
        if token_id is not None:
            stmt = stmt.where(OfferingModel.token_id == token_id)
        page = await keyset_page(session, stmt, [OfferingModel.seq], descending=True, first=first, after=after)
        return Connection.from_page(page, Offering.of)

    @strawberry.field(extensions=authenticated(), description="One offering, or null when missing or not visible.")
    async def offering(self, info: Info, id: uuid.UUID) -> Offering | None:
        session = await info.context.session()
        stmt = (await visibility.visible_offerings(session, _actor(info))).where(OfferingModel.id == id)
        found = (await session.execute(stmt)).scalar_one_or_none()
        return None if found is None else Offering.of(found)

    @strawberry.field(extensions=authenticated(), description="The caller's subscriptions, newest first.")
    async def my_subscriptions(
        self, info: Info, offering_id: uuid.UUID | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[OfferingSubscription]:
        user_id = info.context.viewer.require_user()
        stmt = select(SubscriptionModel).where(SubscriptionModel.user_id == user_id)
        if offering_id is not None:
            stmt = stmt.where(SubscriptionModel.offering_id == offering_id)
        page = await keyset_page(
            await info.context.session(), stmt, [SubscriptionModel.seq], descending=True, first=first, after=after
        )
        return Connection.from_page(page, OfferingSubscription.of)

    @strawberry.field(
        extensions=requires(Role.ISSUER, Role.ADMIN, Role.COMPLIANCE),
        description=("Every subscription of an offering, in time priority (its issuer, ADMIN, COMPLIANCE)."),
    )
    async def offering_subscriptions(
        self, info: Info, offering_id: uuid.UUID, first: int | None = None, after: str | None = None
    ) -> Connection[OfferingSubscription]:
        session = await info.context.session()
        await visibility.require_manager(session, _actor(info), offering_id)
        stmt = select(SubscriptionModel).where(SubscriptionModel.offering_id == offering_id)
        page = await keyset_page(session, stmt, [SubscriptionModel.seq], first=first, after=after)
        return Connection.from_page(page, OfferingSubscription.of)

    @strawberry.field(
        extensions=requires(Role.ISSUER, Role.ADMIN, Role.COMPLIANCE),
        description=("Direct issuances and redemptions, newest first (issuers see those of their assets' tokens)."),
    )
    async def token_issuances(
        self,
        info: Info,
        token_id: uuid.UUID | None = None,
        state: IssuanceState | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[TokenIssuance]:
        session = await info.context.session()
        stmt = visibility.visible_issuances(_actor(info))
        if token_id is not None:
            stmt = stmt.where(TokenIssuanceModel.token_id == token_id)
        if state is not None:
            stmt = stmt.where(TokenIssuanceModel.state == state)
        page = await keyset_page(session, stmt, [TokenIssuanceModel.seq], descending=True, first=first, after=after)
        return Connection.from_page(page, TokenIssuance.of)


@strawberry.type
class Mutation:
    @mutation(
        extensions=requires(Role.ISSUER, Role.ADMIN),
        description=("Create an offering (DRAFT) on an ACTIVE security token of one of the caller's assets."),
    )
    async def create_offering(self, info: Info, input: CreateOfferingInput) -> Offering:
        spec = offerings.OfferingSpec(
            token_id=input.token_id,
            name=input.name,
            quote_currency=input.quote_currency,
            price=input.price,
            min_ticket=input.min_ticket,
            target=input.target,
            hard_cap=input.hard_cap,
            opens_at=input.opens_at,
            closes_at=input.closes_at,
            allocation_rule=input.allocation_rule,
            lot_size=input.lot_size,
            max_ticket=input.max_ticket,
            eligible_countries=input.eligible_countries,
            accredited_only=input.accredited_only,
            fee_bps=input.fee_bps,
        )
        return Offering.of(await _unit(info, lambda s: offerings.create_offering(s, _actor(info), spec)))

    @mutation(extensions=requires(Role.ISSUER, Role.ADMIN), description="DRAFT -> OPEN.")
    async def open_offering(self, info: Info, id: uuid.UUID) -> Offering:
        return Offering.of(await _unit(info, lambda s: offerings.open_offering(s, _actor(info), id)))

    @mutation(
        extensions=requires(Role.ISSUER, Role.ADMIN),
        description=(
            "OPEN -> CLOSED -> ALLOCATED: allocate by the offering's rule, release what was not allocated and send the "
            "mints to the agent (or CANCELED when the target was missed). Also done by the scheduler at closesAt."
        ),
    )
    async def close_offering(self, info: Info, id: uuid.UUID) -> Offering:
        closed = await _unit(info, lambda s: closing.close_offering(s, _actor(info), id))
        session = await info.context.session()

        async def release() -> None:  # its own transaction once the close committed: see closing.py
            await UnitOfWork(session).run(lambda: closing.release_leftovers(session, id))

        after_commit(info, release)
        return Offering.of(closed)

    @mutation(
        extensions=requires(Role.ISSUER, Role.ADMIN),
        description=("DRAFT, OPEN or CLOSED -> CANCELED; every reservation is released."),
    )
    async def cancel_offering(self, info: Info, id: uuid.UUID) -> Offering:
        return Offering.of(await _unit(info, lambda s: closing.cancel_offering(s, _actor(info), id)))

    @mutation(
        extensions=requires(Role.INVESTOR),
        result="subscription",
        description=(
            "Subscribe cash to an OPEN offering (reserved at once; idempotent per clientKey). A refusal is a REJECTED "
            "subscription with a reason, not an error."
        ),
    )
    async def subscribe_to_offering(self, info: Info, input: SubscribeInput) -> OfferingSubscription:
        req = subscriptions.SubscribeRequest(input.offering_id, input.amount, input.client_key)
        return OfferingSubscription.of(await _unit(info, lambda s: subscriptions.subscribe(s, _actor(info), req)))

    @mutation(
        extensions=requires(Role.INVESTOR),
        result="subscription",
        description=(
            "Cancel one of the caller's ACTIVE subscriptions while the offering is OPEN; the cash is released."
        ),
    )
    async def cancel_subscription(self, info: Info, id: uuid.UUID) -> OfferingSubscription:
        return OfferingSubscription.of(
            await _unit(info, lambda s: subscriptions.cancel_subscription(s, _actor(info), id))
        )

    @mutation(
        extensions=requires(Role.ISSUER, Role.ADMIN),
        description=(
            "Mint tokens to named investors without an offering; above ISSUANCE_APPROVAL_THRESHOLD tokens it waits "
            "for COMPLIANCE (approveIssuance)."
        ),
    )
    async def issue_tokens(self, info: Info, input: IssueTokensInput) -> TokenIssuance:
        lines = [direct.Line(a.user_id, a.amount) for a in input.allocations]
        threshold = info.context.settings.issuance_approval_threshold
        return TokenIssuance.of(
            await _unit(
                info,
                lambda s: direct.issue_tokens(
                    s, _actor(info), input.token_id, lines, approval_threshold=threshold, client_key=input.client_key
                ),
            )
        )

    @mutation(
        extensions=requires(Role.COMPLIANCE, Role.ADMIN),
        description=("Approve a PENDING_APPROVAL issuance (four eyes: not its requester); its mints go to the agent."),
    )
    async def approve_issuance(self, info: Info, id: uuid.UUID) -> TokenIssuance:
        return TokenIssuance.of(await _unit(info, lambda s: direct.decide_issuance(s, _actor(info), id, approve=True)))

    @mutation(extensions=requires(Role.COMPLIANCE, Role.ADMIN), description=("Reject a PENDING_APPROVAL issuance."))
    async def reject_issuance(self, info: Info, id: uuid.UUID, reason: str) -> TokenIssuance:
        return TokenIssuance.of(
            await _unit(info, lambda s: direct.decide_issuance(s, _actor(info), id, approve=False, reason=reason))
        )

    @mutation(
        extensions=requires(Role.ISSUER, Role.ADMIN),
        description=(
            "Burn an investor's tokens (redemption). When the last token of a REDEEMING asset is burned, the asset is "
            "RETIRED."
        ),
    )
    async def redeem_tokens(self, info: Info, input: RedeemTokensInput) -> TokenIssuance:
        return TokenIssuance.of(
            await _unit(
                info,
                lambda s: direct.redeem_tokens(
                    s, _actor(info), input.token_id, input.user_id, input.amount, client_key=input.client_key
                ),
            )
        )

    @mutation(
        extensions=requires(Role.COMPLIANCE),
        result="accredited",
        description=("Mark an investor (with a KYC case) as accredited or not, for accredited-only offerings."),
    )
    async def set_accreditation(self, info: Info, user_id: uuid.UUID, accredited: bool) -> bool:
        actor = _actor(info)

        async def work(session: AsyncSession) -> bool:
            case = (
                await session.execute(select(KycCase).where(KycCase.user_id == user_id).with_for_update())
            ).scalar_one_or_none()
            if case is None:
                raise NotFound("this user has no KYC case")
            case.accredited = accredited
            record(
                session,
                actor_id=actor.user_id,
                action="kyc.accreditation",
                target_type="user",
                target_id=user_id,
                request_id=actor.request_id,
                details={"accredited": accredited},
            )
            return accredited

        return bool(await _unit(info, work))


@strawberry.type(description="An offering's state and subscribed total, sent at subscribe time and on every change.")
class OfferingUpdate:
    offering_id: uuid.UUID
    state: OfferingState
    subscribed_total: Decimal
    subscription_count: int
    allocated_total: Decimal

    @classmethod
    def from_event(cls, e: dict[str, Any]) -> OfferingUpdate:
        return cls(
            offering_id=uuid.UUID(e["offeringId"]),
            state=OfferingStateModel(e["state"]),
            subscribed_total=Decimal(e["subscribedTotal"]),
            subscription_count=int(e["subscriptionCount"]),
            allocated_total=Decimal(e["allocatedTotal"]),
        )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        extensions=authenticated(),
        metadata=PRIVATE,
        description=("The offering's current state, then every change (for those who may see the offering)."),
    )
    async def offering_updates(self, info: Info, offering_id: uuid.UUID) -> AsyncGenerator[OfferingUpdate, None]:
        ctx = info.context
        async with ctx.services.session_factory() as session:
            stmt = (await visibility.visible_offerings(session, _actor(info))).where(OfferingModel.id == offering_id)
            offering = (await session.execute(stmt)).scalar_one_or_none()
            if offering is None:
                raise NotFound("offering not found")
            first = visibility.event(offering)
        async with ctx.services.pubsub.listen(visibility.channel(offering_id)) as events:
            yield OfferingUpdate.from_event(first)
            async for raw in events:
                yield OfferingUpdate.from_event(json.loads(raw))


async def load_offering(info: Info, id: uuid.UUID) -> Offering | None:
    """`node(id)` for an Offering: what `offering(id)` shows."""
    if not info.context.viewer.authenticated:
        return None
    session = await info.context.session()
    stmt = (await visibility.visible_offerings(session, _actor(info))).where(OfferingModel.id == id)
    row = (await session.execute(stmt)).scalar_one_or_none()
    return None if row is None else Offering.of(row)


async def load_subscription(info: Info, id: uuid.UUID) -> OfferingSubscription | None:
    """`node(id)` for an OfferingSubscription: its investor (`mySubscriptions`), or the offering's issuer and
    staff (`offeringSubscriptions`)."""
    actor = _actor(info)
    if actor.user_id is None:
        return None
    session = await info.context.session()
    sub = await session.get(SubscriptionModel, id)
    if sub is None:
        return None
    if sub.user_id != actor.user_id:
        if not actor.has(Role.ISSUER, Role.ADMIN, Role.COMPLIANCE):
            return None
        offering = await session.get(OfferingModel, sub.offering_id)
        if offering is None or not (actor.has(Role.ADMIN, Role.COMPLIANCE) or offering.issuer_id == actor.user_id):
            return None
    return OfferingSubscription.of(sub)


async def load_issuance(info: Info, id: uuid.UUID) -> TokenIssuance | None:
    """`node(id)` for a TokenIssuance: what `tokenIssuances` lists (staff; issuers those of their tokens)."""
    actor = _actor(info)
    if actor.user_id is None or not actor.has(Role.ISSUER, Role.ADMIN, Role.COMPLIANCE):
        return None
    session = await info.context.session()
    stmt = visibility.visible_issuances(actor).where(TokenIssuanceModel.id == id)
    row = (await session.execute(stmt)).scalar_one_or_none()
    return None if row is None else TokenIssuance.of(row)


register_node("Offering", "offerings", load_offering)
register_node("OfferingSubscription", "offering_subscriptions", load_subscription)
register_node("TokenIssuance", "token_issuances", load_issuance)
