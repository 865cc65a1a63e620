"""Subscriptions: an INVESTOR asks for tokens of an OPEN offering with an amount of cash.

Locking (subscriptions of different investors run side by side; only the running totals' update and the commit are
serialized):
- the offering row FOR KEY SHARE for the whole subscription: it conflicts with the FOR UPDATE that every state
  change (close, cancel, allocation, settlement) takes, so the offering cannot leave OPEN while a subscription is
  in flight, and close waits for every subscription in flight and then sees it; it does not conflict with other
  subscriptions' key shares nor with their totals' UPDATE (FOR NO KEY UPDATE);
- a transaction advisory lock per (offering, investor): the investor's concurrent requests (max ticket, the
  client key) are taken one at a time;
- the totals (subscribed_total, subscription_count) move by a relative UPDATE as the last statement, which takes
  the row's NO KEY UPDATE lock until commit; for FIRST_COME its WHERE re-checks the hard cap on the latest row
  version, so concurrent subscriptions at the cap take exactly what fits: one that lost the race is rolled back
  to a savepoint (its reservation undone) and REJECTED with CAP_REACHED.
Lock order everywhere: offering (key share or update) -> investor's lock -> subscription rows -> ledger accounts ->
offering totals; nothing waits for a key-share holder while holding what that holder still needs.

Validation errors (amount not positive, outside the ticket limits) are BAD_USER_INPUT and change nothing; a refusal
is a REJECTED subscription with a reason, like the order gate, checked in this order:

    OFFERING_NOT_OPEN, OFFERING_NOT_STARTED, OFFERING_CLOSED,
    KYC_NOT_APPROVED, COUNTRY_NOT_ELIGIBLE, NOT_ACCREDITED,
    NO_VERIFIED_WALLET       no linked wallet that the token's identity registry lists and that is not frozen
    MAX_TICKET_EXCEEDED      the investor's active subscriptions plus this one exceed maxTicket
    CAP_REACHED              FIRST_COME: the hard cap is already subscribed (PRO_RATA takes oversubscription)
    INSUFFICIENT_CASH        ledger AVAILABLE < amount

An accepted subscription is ACTIVE with its cash reserved (AVAILABLE -> RESERVED, reference
`subscription:<id>:reserve`). Idempotent per (offering, investor, clientKey): a repeated key returns the stored
subscription, whatever its state. Canceling (while the offering is OPEN) releases the cash.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from core.errors import BadUserInput, Conflict, NotFound
from models.identity import KycStatus
from models.issuance import AllocationRule, Offering, OfferingState, OfferingSubscription, SubscriptionState
from resolvers import ledger
from resolvers.assets.validation import decimal_places
from resolvers.audit import record
from resolvers.idempotency_keys import check_key
from resolvers.identity.kyc_states import effective_status
from resolvers.issuance.offerings import Actor, accepts_subscriptions
from resolvers.raw_sql import pg

MAX_CLIENT_KEY = 64

# The investor's KYC case, AVAILABLE cash in the quote currency, active subscriptions to this offering, and each
# linked wallet the token's identity registry lists (registered) with its frozen flag: one round trip. Written as
# lookups by key from the investor's own rows (scalar subqueries, which the planner does not turn into joins), so
# the plan cannot depend on statistics: the join it replaced was planned, on tables filled since their last ANALYZE,
# as a scan of every identity of the registry and every holder of the token (178 ms at 10,000 investors, a
# subscription of 10,000 taking 10 minutes). `offering_id::text` keeps the sum on the investor's index rather than
# the offering's (which would walk every active subscription).
_READ = """
SELECT k.status AS kyc, k.expires_at AS kyc_expires, k.country, k.accredited,
       (SELECT a.balance FROM ledger_accounts a WHERE a.owner_id = $1 AND a.kind = 'AVAILABLE'
                                                 AND a.currency = $2) AS cash,
       (SELECT coalesce(sum(s.amount), 0) FROM offering_subscriptions s
        WHERE s.user_id = $1 AND s.offering_id::text = $3::uuid::text AND s.state = 'ACTIVE') AS mine,
       w.address, w.frozen
FROM (SELECT 1) one
LEFT JOIN kyc_cases k ON k.user_id = $1
LEFT JOIN LATERAL (
    SELECT x.address, x.linked_at, coalesce(x.frozen, false) AS frozen FROM (
        SELECT wa.address, wa.linked_at,
               (SELECT ie.registered FROM identities ie
                WHERE ie.chain_id = t.chain_id AND ie.registry_address = t.identity_registry
                  AND ie.investor = wa.address) AS registered,
               (SELECT h.frozen FROM holdings h
                WHERE h.chain_id = t.chain_id AND h.token_address = t.address AND h.holder = wa.address) AS frozen
        FROM wallets wa JOIN tokens t ON t.id = $4
        WHERE wa.user_id = $1) x
    WHERE x.registered
) w ON true
ORDER BY w.linked_at, w.address"""


@dataclass(frozen=True)
class SubscribeRequest:
    offering_id: uuid.UUID
    amount: Decimal
    client_key: str | None = None


def _validate(req: SubscribeRequest, offering: Offering) -> None:
    if not req.amount.is_finite() or req.amount <= 0:
        raise BadUserInput("amount must be positive", field="amount")
    if decimal_places(req.amount) > 18:
        raise BadUserInput("amount may have at most 18 decimal places", field="amount")
    if req.amount < offering.min_ticket:
        raise BadUserInput(f"amount is below the minimum ticket {offering.min_ticket.normalize():f}", field="amount")
    if offering.max_ticket is not None and req.amount > offering.max_ticket:
        raise BadUserInput(f"amount is above the maximum ticket {offering.max_ticket.normalize():f}", field="amount")


def decide(offering: Offering, rows: list[Any], amount: Decimal, now: datetime) -> tuple[str | None, str | None]:
    """(refusal reason or None, the wallet to mint to)."""
    if (why := accepts_subscriptions(offering, now)) is not None:
        return why, None
    first = rows[0]
    if (
        first["kyc"] is None
        or effective_status(KycStatus(first["kyc"]), first["kyc_expires"], now) is not KycStatus.APPROVED
    ):
        return "KYC_NOT_APPROVED", None
    if offering.eligible_countries is not None and first["country"] not in offering.eligible_countries:
        return "COUNTRY_NOT_ELIGIBLE", None
    if offering.accredited_only and not first["accredited"]:
        return "NOT_ACCREDITED", None
    wallets = [r["address"] for r in rows if r["address"] is not None and not r["frozen"]]
    if not wallets:
        return "NO_VERIFIED_WALLET", None
    if offering.max_ticket is not None and Decimal(first["mine"]) + amount > offering.max_ticket:
        return "MAX_TICKET_EXCEEDED", wallets[0]
    if offering.allocation_rule is AllocationRule.FIRST_COME and offering.subscribed_total + amount > offering.hard_cap:
        return "CAP_REACHED", wallets[0]
    cash = first["cash"] if first["cash"] is not None else Decimal(0)
    if cash < amount:
        return "INSUFFICIENT_CASH", wallets[0]
    return None, wallets[0]


# the running totals, moved relatively (concurrent subscriptions each add theirs); for FIRST_COME the hard cap is
# checked on the row version this UPDATE locks, so no two subscriptions can both take its last room
_CLAIM = """
UPDATE offerings SET subscribed_total = subscribed_total + $2, subscription_count = subscription_count + $3,
                     updated_at = now()
WHERE id = $1 AND state = 'OPEN' AND (NOT $4 OR subscribed_total + $2 <= hard_cap)
RETURNING subscribed_total, subscription_count"""


async def _key_shared(session: AsyncSession, offering_id: uuid.UUID) -> Offering:
    """The offering, re-read under FOR KEY SHARE (see the module docstring)."""
    await session.flush()
    offering = (
        await session.execute(
            select(Offering)
            .where(Offering.id == offering_id)
            .with_for_update(read=True, key_share=True)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if offering is None:
        raise NotFound("offering not found")
    return offering


def _totals(offering: Offering, row: Any) -> None:
    """The totals the UPDATE wrote, as the loaded object's committed state (nothing left for the ORM to flush)."""
    set_committed_value(offering, "subscribed_total", row["subscribed_total"])
    set_committed_value(offering, "subscription_count", row["subscription_count"])


async def _existing(
    session: AsyncSession, offering_id: uuid.UUID, user_id: uuid.UUID, client_key: str
) -> OfferingSubscription | None:
    return (
        await session.execute(
            select(OfferingSubscription).where(
                OfferingSubscription.offering_id == offering_id,
                OfferingSubscription.user_id == user_id,
                OfferingSubscription.client_key == client_key,
            )
        )
    ).scalar_one_or_none()


async def subscribe(session: AsyncSession, actor: Actor, req: SubscribeRequest) -> OfferingSubscription:
    """Does not commit (the caller's unit of work does)."""
    user_id = actor.user_id
    if user_id is None:
        raise BadUserInput("a subscription needs an investor")
    key = check_key(req.client_key, field="clientKey", max_chars=MAX_CLIENT_KEY)
    offering = await _key_shared(session, req.offering_id)
    conn = await pg(session)
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"offering-subscriber:{offering.id}:{user_id}"
    )
    if key is not None and (earlier := await _existing(session, offering.id, user_id, key)) is not None:
        if earlier.amount != req.amount:  # another request under a used key: not a retry
            raise Conflict("clientKey was already used for a different subscription", reason="IDEMPOTENCY_KEY_REUSED")
        return earlier  # before validation: a retried request gets what it got the first time
    _validate(req, offering)
    now = datetime.now(UTC)
    rows = await conn.fetch(_READ, user_id, offering.quote_currency, offering.id, offering.token_id)
    reason, wallet = decide(offering, rows, req.amount, now)
    sub = OfferingSubscription(
        id=uuid.uuid4(),
        offering_id=offering.id,
        user_id=user_id,
        client_key=key,
        amount=req.amount,
        wallet_address=wallet,
        reason=reason,
        state=SubscriptionState.REJECTED if reason else SubscriptionState.ACTIVE,
        allocated_quantity=Decimal(0),
        allocated_units=0,
        allocated_cash=Decimal(0),
    )
    session.add(sub)
    first_come = offering.allocation_rule is AllocationRule.FIRST_COME
    if reason is not None or not first_come:
        # the outcome is known (PRO_RATA takes every subscription of an OPEN offering, and it stays OPEN under our
        # key share): its audit row goes in now, outside the serialized part (the totals' UPDATE to the commit)
        _audit(session, actor, sub)
    await session.flush()
    if reason is not None:
        return sub
    if first_come:
        await conn.execute("SAVEPOINT subscribe")
    await ledger.reserve(session, user_id, req.amount, offering.quote_currency, f"subscription:{sub.id}:reserve")
    claimed = await conn.fetchrow(_CLAIM, offering.id, req.amount, 1, first_come)
    if claimed is not None:
        _totals(offering, claimed)
    elif not first_come:  # cannot happen while we hold the key share; refuse rather than leave it unaccounted
        raise Conflict("the offering is no longer open", reason="OFFERING_NOT_OPEN")
    else:  # the cap's last room went to a concurrent subscription: undo the reservation
        await conn.execute("ROLLBACK TO SAVEPOINT subscribe")
        sub.state, sub.reason = SubscriptionState.REJECTED, "CAP_REACHED"
    if first_come:
        _audit(session, actor, sub)
    return sub


def _audit(session: AsyncSession, actor: Actor, sub: OfferingSubscription) -> None:
    record(
        session,
        actor_id=actor.user_id,
        action="offering.subscribe",
        target_type="offering_subscription",
        target_id=sub.id,
        request_id=actor.request_id,
        details={
            "offering": str(sub.offering_id),
            "amount": str(sub.amount),
            "state": sub.state.value,
            **({"reason": sub.reason} if sub.reason else {}),
        },
    )


async def cancel_subscription(session: AsyncSession, actor: Actor, subscription_id: uuid.UUID) -> OfferingSubscription:
    """The investor takes an ACTIVE subscription back while the offering is OPEN; its cash is released."""
    found = (
        await session.execute(
            select(OfferingSubscription.offering_id).where(
                OfferingSubscription.id == subscription_id, OfferingSubscription.user_id == actor.user_id
            )
        )
    ).scalar()
    if found is None:
        raise NotFound("subscription not found")
    offering = await _key_shared(session, found)  # the offering first, as subscribe and close lock it: no deadlock
    sub = (
        await session.execute(
            select(OfferingSubscription)
            .where(OfferingSubscription.id == subscription_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    if offering.state is not OfferingState.OPEN:
        raise Conflict(
            f"the offering is {offering.state.value}; subscriptions can be canceled while it is OPEN",
            reason="OFFERING_NOT_OPEN",
        )
    if sub.state is not SubscriptionState.ACTIVE:
        raise Conflict(f"the subscription is {sub.state.value}", reason="INVALID_STATE")
    conn = await pg(session)
    await ledger.release(session, sub.user_id, sub.amount, offering.quote_currency, f"subscription:{sub.id}:release")
    sub.state, sub.reason = SubscriptionState.CANCELED, "USER_CANCELED"
    _totals(offering, await conn.fetchrow(_CLAIM, offering.id, -sub.amount, -1, False))
    record(
        session,
        actor_id=actor.user_id,
        action="offering.subscription_cancel",
        target_type="offering_subscription",
        target_id=sub.id,
        request_id=actor.request_id,
        details={"offering": str(offering.id)},
    )
    return sub
