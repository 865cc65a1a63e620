"""Offerings: an ISSUER of an asset sells new tokens of its ACTIVE security token at a fixed price.

    DRAFT --open--> OPEN --close--> CLOSED --allocate--> ALLOCATED --(every mint done)--> SETTLED
      \\--cancel--/      \\--cancel (or target missed at close)--> CANCELED (every reservation released)

Each step is checked against the offering's state (CONFLICT otherwise) and the caller's right (the asset's issuer;
ADMIN may act for any issuer), runs under the offering's row lock, and leaves an audit row. Plain async functions
taking a session and the actor, so the GraphQL layer, jobs and the CLI call the same code. None commits: the caller
owns the unit of work.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict, Forbidden, NotFound
from models.assets import Asset, AssetStatus
from models.identity import Role
from models.issuance import AllocationRule, Offering, OfferingState
from models.tokens import Token, TokenKind
from resolvers.audit import record
from resolvers.identity.countries import ISO_3166_ALPHA2
from resolvers.trading.markets import _places

MAX_FEE_BPS = 1000  # 10 %
MAX_NAME = 200


@dataclass(frozen=True)
class Actor:
    """Who acts: a user and its roles (the GraphQL viewer, a job's system actor, an operator in the CLI)."""

    user_id: uuid.UUID | None
    roles: frozenset[str] = frozenset()
    request_id: str | None = None

    def has(self, *roles: Role) -> bool:
        return any(r.value in self.roles for r in roles)


SYSTEM = Actor(None, frozenset({Role.ADMIN.value}))  # the scheduled close job


@dataclass(frozen=True)
class OfferingSpec:
    token_id: uuid.UUID
    name: str
    quote_currency: str
    price: Decimal
    min_ticket: Decimal
    target: Decimal
    hard_cap: Decimal
    opens_at: datetime
    closes_at: datetime
    allocation_rule: AllocationRule
    lot_size: Decimal = Decimal(1)
    max_ticket: Decimal | None = None
    eligible_countries: list[str] | None = None
    accredited_only: bool = False
    fee_bps: int = 0


def _positive(name: str, value: Decimal) -> None:
    if not value.is_finite() or value <= 0:
        raise BadUserInput(f"{name} must be positive", field=name)


def validate(spec: OfferingSpec, decimals: int) -> None:
    name = " ".join(spec.name.split())
    if not 0 < len(name) <= MAX_NAME:
        raise BadUserInput(f"name must have 1 to {MAX_NAME} characters", field="name")
    for field, value in (
        ("price", spec.price),
        ("lotSize", spec.lot_size),
        ("minTicket", spec.min_ticket),
        ("target", spec.target),
        ("hardCap", spec.hard_cap),
    ):
        _positive(field, value)
    if spec.max_ticket is not None:
        _positive("maxTicket", spec.max_ticket)
        if spec.max_ticket < spec.min_ticket:
            raise BadUserInput("maxTicket must not be below minTicket", field="maxTicket")
    if _places(spec.lot_size) > decimals:
        raise BadUserInput(f"lotSize needs more than the token's {decimals} decimals", field="lotSize")
    if _places(spec.price) + _places(spec.lot_size) > 18:
        raise BadUserInput("price and lotSize together may have at most 18 decimal places", field="price")
    if spec.price * spec.lot_size > spec.hard_cap:
        raise BadUserInput("hardCap must buy at least one lot", field="hardCap")
    if spec.target > spec.hard_cap:
        raise BadUserInput("target must not exceed hardCap", field="target")
    if spec.min_ticket > spec.hard_cap:
        raise BadUserInput("minTicket must not exceed hardCap", field="minTicket")
    if spec.closes_at <= spec.opens_at:
        raise BadUserInput("closesAt must be after opensAt", field="closesAt")
    if spec.closes_at <= datetime.now(UTC):
        raise BadUserInput("closesAt must be in the future", field="closesAt")
    if spec.eligible_countries is not None:
        if not spec.eligible_countries:
            raise BadUserInput(
                "eligibleCountries must name at least one country (or be null for any)", field="eligibleCountries"
            )
        for c in spec.eligible_countries:
            if c.upper() not in ISO_3166_ALPHA2:
                raise BadUserInput(f"unknown country code {c!r} (ISO 3166-1 alpha-2)", field="eligibleCountries")
    if not 0 <= spec.fee_bps <= MAX_FEE_BPS:
        raise BadUserInput(f"feeBps must be between 0 and {MAX_FEE_BPS}", field="feeBps")


def _check_issuer(actor: Actor, issuer_id: uuid.UUID) -> None:
    if actor.has(Role.ADMIN) or actor.user_id == issuer_id:
        return
    raise Forbidden("only the asset's issuer may manage its offerings")


async def create_offering(session: AsyncSession, actor: Actor, spec: OfferingSpec) -> Offering:
    token = await session.get(Token, spec.token_id)
    if token is None or token.kind is not TokenKind.SECURITY or token.asset_id is None:
        raise NotFound("security token not found")
    asset = await session.get(Asset, token.asset_id)
    assert asset is not None
    _check_issuer(actor, asset.issuer_id)
    if asset.status is not AssetStatus.ACTIVE:
        raise Conflict(f"the asset is {asset.status.value}; offerings need an ACTIVE asset", reason="ASSET_NOT_ACTIVE")
    if token.paused:
        raise Conflict("the token is paused", reason="TOKEN_PAUSED")
    currency = spec.quote_currency.strip().upper()
    if not currency.isalnum() or not 2 <= len(currency) <= 16:
        raise BadUserInput("quoteCurrency must be 2 to 16 letters or digits", field="quoteCurrency")
    validate(spec, token.decimals)
    offering = Offering(
        id=uuid.uuid4(),
        token_id=token.id,
        asset_id=asset.id,
        issuer_id=asset.issuer_id,
        chain_id=token.chain_id,
        token_address=token.address,
        name=" ".join(spec.name.split()),
        quote_currency=currency,
        price=spec.price,
        lot_size=spec.lot_size,
        min_ticket=spec.min_ticket,
        max_ticket=spec.max_ticket,
        target=spec.target,
        hard_cap=spec.hard_cap,
        opens_at=spec.opens_at,
        closes_at=spec.closes_at,
        eligible_countries=None
        if spec.eligible_countries is None
        else sorted({c.upper() for c in spec.eligible_countries}),
        accredited_only=spec.accredited_only,
        allocation_rule=spec.allocation_rule,
        fee_bps=spec.fee_bps,
        state=OfferingState.DRAFT,
        subscribed_total=Decimal(0),
        allocated_total=Decimal(0),
        subscription_count=0,
    )
    session.add(offering)
    await session.flush()
    record(
        session,
        actor_id=actor.user_id,
        action="offering.create",
        target_type="offering",
        target_id=offering.id,
        request_id=actor.request_id,
        details={"token": str(token.id), "hardCap": str(spec.hard_cap)},
    )
    return offering


async def locked(session: AsyncSession, offering_id: uuid.UUID) -> Offering:
    """The offering, row-locked and re-read (pending changes of this session are flushed first, so the re-read
    cannot drop them)."""
    await session.flush()
    offering = (
        await session.execute(
            select(Offering)
            .where(Offering.id == offering_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if offering is None:
        raise NotFound("offering not found")
    return offering


def transition(
    session: AsyncSession,
    actor: Actor,
    offering: Offering,
    allowed: tuple[OfferingState, ...],
    to: OfferingState,
    action: str,
    details: dict[str, str] | None = None,
) -> None:
    """Move `offering` (locked) to `to` if its state allows, with the audit row."""
    if offering.state not in allowed:
        raise Conflict(
            f"the offering is {offering.state.value}; {action} needs {' or '.join(s.value for s in allowed)}",
            reason="INVALID_STATE",
        )
    before = offering.state
    offering.state = to
    record(
        session,
        actor_id=actor.user_id,
        action=f"offering.{action}",
        target_type="offering",
        target_id=offering.id,
        request_id=actor.request_id,
        details={"from": before.value, "to": to.value, **(details or {})},
    )


async def open_offering(session: AsyncSession, actor: Actor, offering_id: uuid.UUID) -> Offering:
    offering = await locked(session, offering_id)
    _check_issuer(actor, offering.issuer_id)
    if offering.closes_at <= datetime.now(UTC):
        raise Conflict("the offering's closing time has passed", reason="OFFERING_CLOSED")
    transition(session, actor, offering, (OfferingState.DRAFT,), OfferingState.OPEN, "open")
    return offering


def accepts_subscriptions(offering: Offering, now: datetime) -> str | None:
    """None when the offering takes subscriptions now, else the refusal's reason code."""
    if offering.state is not OfferingState.OPEN:
        return "OFFERING_NOT_OPEN"
    if now < offering.opens_at:
        return "OFFERING_NOT_STARTED"
    if now >= offering.closes_at:
        return "OFFERING_CLOSED"
    return None
