"""Who sees which offering, and the live updates of one.

- ADMIN and COMPLIANCE see every offering and issuance;
- an issuer sees the offerings and issuances of its own assets;
- an investor sees the OPEN offerings it is eligible for (KYC APPROVED and not expired, its country allowed, accredited
  when required) and every offering it subscribed to.
Anything else is invisible (a lookup answers null / NOT_FOUND, never FORBIDDEN: existence is not disclosed).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, any_, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.pubsub import PubSubHub
from models.assets import Asset
from models.identity import KycCase, KycStatus, Role
from models.issuance import Offering, OfferingState, OfferingSubscription, SubscriptionState, TokenIssuance
from models.tokens import Token
from resolvers.identity.kyc_states import effective_status
from resolvers.issuance.offerings import Actor

log = logging.getLogger("rwa.issuance")


def _staff(actor: Actor) -> bool:
    return actor.has(Role.ADMIN, Role.COMPLIANCE)


async def visible_offerings(session: AsyncSession, actor: Actor) -> Select[Offering]:
    stmt = select(Offering)
    if _staff(actor):
        return stmt
    me = actor.user_id
    case = (
        await session.execute(
            select(KycCase.status, KycCase.expires_at, KycCase.country, KycCase.accredited).where(KycCase.user_id == me)
        )
    ).first()
    eligible: Any = false()
    if case is not None and effective_status(case.status, case.expires_at, datetime.now(UTC)) is KycStatus.APPROVED:
        eligible = and_(
            Offering.state == OfferingState.OPEN,
            or_(Offering.eligible_countries.is_(None), any_(Offering.eligible_countries) == (case.country or "")),
            true() if case.accredited else Offering.accredited_only.is_(False),
        )
    mine = select(OfferingSubscription.offering_id).where(
        OfferingSubscription.user_id == me, OfferingSubscription.state != SubscriptionState.REJECTED
    )
    return stmt.where(or_(eligible, Offering.id.in_(mine), Offering.issuer_id == me))


async def require_manager(session: AsyncSession, actor: Actor, offering_id: uuid.UUID) -> Offering:
    """The offering, if the caller manages it (its issuer) or is staff; NOT_FOUND otherwise."""
    offering = await session.get(Offering, offering_id)
    if offering is None or not (_staff(actor) or offering.issuer_id == actor.user_id):
        raise NotFound("offering not found")
    return offering


def visible_issuances(actor: Actor) -> Select[TokenIssuance]:
    stmt = select(TokenIssuance)
    if _staff(actor):
        return stmt
    own = select(Token.id).join(Asset, Asset.id == Token.asset_id).where(Asset.issuer_id == actor.user_id)
    return stmt.where(TokenIssuance.token_id.in_(own))


def channel(offering_id: object) -> str:
    return f"offerings:{offering_id}"


def event(offering: Offering) -> dict[str, Any]:
    return {
        "offeringId": str(offering.id),
        "state": offering.state.value,
        "subscribedTotal": str(offering.subscribed_total),
        "subscriptionCount": offering.subscription_count,
        "allocatedTotal": str(offering.allocated_total),
    }


async def publish(pubsub: PubSubHub, offering: Offering) -> None:
    """After commit: a lost live update is recovered by the snapshot a new subscriber gets."""
    await publish_event(pubsub, channel(offering.id), json.dumps(event(offering)).encode())


async def publish_event(pubsub: PubSubHub, to: str, message: bytes) -> None:
    """`publish` of an event built earlier (inside the transaction, sent once it committed)."""
    try:
        await pubsub.publish(to, message)
    except Exception:
        log.warning("could not publish the offering update on %s", to, exc_info=True)
