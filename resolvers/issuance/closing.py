"""Closing an offering: allocation, the batched mints, and what their confirmation or failure does to the cash.

close (ISSUER, or the scheduled job once closesAt has passed), in one transaction under the offering's lock:
1. OPEN -> CLOSED;
2. ACTIVE subscriptions whose wallet is no longer listed by the identity registry, or is frozen, are REJECTED
   (WALLET_NOT_VERIFIED) with their cash released, since a mint to them would revert the whole batch;
3. if the whole lots asked fall short of the target, the offering is CANCELED (TARGET_NOT_REACHED) and every
   reservation released;
4. otherwise allocation.allocate() fixes each subscription's lots: none -> UNALLOCATED, some -> ALLOCATED (the
   allocated cash stays RESERVED);
5. ALLOCATED subscriptions are minted in time order in batches of MINT_BATCH through the agent
   (`batchMint`, kind "offering.mint", business_ref "offering:<id>:mint:<n>"), and the offering is ALLOCATED.
Then, in the next transaction (`release_leftovers`, which every caller runs right after committing the close), what
was not allocated (all of an UNALLOCATED subscription's cash, the part of an ALLOCATED one that did not buy a lot)
goes back to the investors in one ledger movement (reference "offering:<id>:leftover", so exactly once). It is a
transaction of its own so that the mints reach the agent without waiting for it (at 10,000 subscriptions it is the
largest statement of the close: 20,000 ledger entries); if the caller dies between the two, the first mint
confirmation or failure releases the leftovers (the handlers run `release_leftovers` first).

When a batch's mint is indexed and final (agent/effects/issuance.py calls `mint_confirmed` in the executor's
transaction): its subscriptions are SETTLED and their allocated cash moves RESERVED -> issuer AVAILABLE, the
platform's fee (feeBps of the batch, rounded down) -> FEES, in one ledger movement per batch (reference
"<business_ref>:settle", so exactly once). A failed mint makes them FAILED and releases their cash. The offering is
SETTLED once no subscription is ALLOCATED any more.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext

from sqlalchemy.ext.asyncio import AsyncSession

from agent.outbox import enqueue_many
from models.issuance import Offering, OfferingState, SubscriptionState
from models.ledger import AccountKind
from models.operations import ChainOperation
from models.tokens import Token
from resolvers import ledger
from resolvers.audit import record
from resolvers.issuance.allocation import Demand, allocate
from resolvers.issuance.offerings import Actor, _check_issuer, locked, transition
from resolvers.ledger import Platform, UserAccount
from resolvers.raw_sql import pg
from resolvers.trading.gate import to_units

log = logging.getLogger("rwa.issuance")
# 200 mints of ~45k gas each stay far below a 30M block gas limit; the contract allows 500
MINT_BATCH = 200
MINT_KIND = "offering.mint"
QUANTUM = Decimal("1e-18")

# ACTIVE subscriptions whose wallet the token's registry still lists and which are not frozen
# Of the subscriptions' wallets: those the token's registry lists, and those frozen. Two index lookups by key
# (= ANY of the wallets), not a join: a join over a just-filled offering_subscriptions table (no planner statistics
# yet) was planned as nested seq scans, 1.3 s for 2,000 subscriptions.
_REGISTERED = """
SELECT investor FROM identities
WHERE chain_id = $1 AND registry_address = $2 AND registered AND investor = ANY($3::text[])"""
_FROZEN = """
SELECT holder FROM holdings WHERE chain_id = $1 AND token_address = $2 AND frozen AND holder = ANY($3::text[])"""


async def _mintable_wallets(session: AsyncSession, token: Token, wallets: set[str]) -> set[str]:
    """The wallets a mint can go to: listed by the token's identity registry and not frozen."""
    conn, listed = await pg(session), list(wallets)
    registered = {r[0] for r in await conn.fetch(_REGISTERED, token.chain_id, token.identity_registry, listed)}
    frozen = {r[0] for r in await conn.fetch(_FROZEN, token.chain_id, token.address, listed)}
    return registered - frozen


@dataclass(frozen=True)
class Sub:
    """The columns of a subscription that closing and settling need (read in bulk: an offering may have 10,000+)."""

    id: uuid.UUID
    seq: int
    user_id: uuid.UUID
    amount: Decimal
    wallet: str | None
    allocated_cash: Decimal


# No row locks: every writer of an offering's subscriptions holds the offering's row lock (close, allocation and
# settlement FOR UPDATE, as here; subscribe and cancel FOR KEY SHARE, which conflicts with it), so under it they
# cannot change; locking 10,000 rows again cost a heap write each.
_SUBS = """
SELECT id, seq, user_id, amount, wallet_address, allocated_cash FROM offering_subscriptions
WHERE offering_id = $1 AND state = $2::subscription_state {extra} ORDER BY seq"""
# every changed subscription in one statement
_SET = """
UPDATE offering_subscriptions s
SET state = u.state::subscription_state, reason = u.reason, allocated_quantity = u.quantity,
    allocated_units = u.units, allocated_cash = u.cash, mint_ref = u.ref, updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::numeric[], $7::text[])
     AS u(id, state, reason, quantity, units, cash, ref)
WHERE s.id = u.id"""


@dataclass
class Change:
    state: SubscriptionState
    reason: str | None = None
    quantity: Decimal = Decimal(0)
    units: int = 0
    cash: Decimal = Decimal(0)
    ref: str | None = None


async def _subs(
    session: AsyncSession, offering_id: uuid.UUID, state: SubscriptionState, mint_ref: str | None = None
) -> list[Sub]:
    """Subscriptions of `offering_id` in `state` (and of one mint batch), locked, in time priority."""
    conn = await pg(session)
    if mint_ref is None:
        rows = await conn.fetch(_SUBS.format(extra=""), offering_id, state.value)
    else:
        rows = await conn.fetch(_SUBS.format(extra="AND mint_ref = $3"), offering_id, state.value, mint_ref)
    return [Sub(*r) for r in rows]


async def _apply(session: AsyncSession, changes: dict[uuid.UUID, Change]) -> None:
    if not changes:
        return
    ids = list(changes)
    c = [changes[i] for i in ids]
    await (await pg(session)).execute(
        _SET,
        ids,
        [x.state.value for x in c],
        [x.reason for x in c],
        [x.quantity for x in c],
        [Decimal(x.units) for x in c],
        [x.cash for x in c],
        [x.ref for x in c],
    )


async def _set_state(
    session: AsyncSession, ids: list[uuid.UUID], state: SubscriptionState, reason: str | None = None
) -> None:
    """Only the state (and a reason): what was allocated stays."""
    await (await pg(session)).execute(
        "UPDATE offering_subscriptions SET state = $2::subscription_state, reason = coalesce($3, reason), "
        "updated_at = now() WHERE id = ANY($1::uuid[])",
        ids,
        state.value,
        reason,
    )


async def _release(
    session: AsyncSession, offering: Offering, subs: list[Sub], amounts: list[Decimal], reference: str
) -> None:
    """Give `amounts` of the subscriptions' reserved cash back, in one ledger movement."""
    legs: list[tuple[ledger.AccountRef, Decimal]] = []
    for sub, amount in zip(subs, amounts):
        if amount > 0:
            legs += [(UserAccount(sub.user_id, AccountKind.RESERVED), -amount), (UserAccount(sub.user_id), amount)]
    if legs:
        await ledger.post(session, kind="RELEASE", reference=reference, currency=offering.quote_currency, legs=legs)


async def cancel_offering(
    session: AsyncSession, actor: Actor, offering_id: uuid.UUID, reason: str = "ISSUER_CANCELED"
) -> Offering:
    offering = await locked(session, offering_id)
    _check_issuer(actor, offering.issuer_id)
    await _cancel(session, actor, offering, reason)
    return offering


async def _cancel(session: AsyncSession, actor: Actor, offering: Offering, reason: str) -> None:
    transition(
        session,
        actor,
        offering,
        (OfferingState.DRAFT, OfferingState.OPEN, OfferingState.CLOSED),
        OfferingState.CANCELED,
        "cancel",
        {"reason": reason},
    )
    subs = await _subs(session, offering.id, SubscriptionState.ACTIVE)
    await _release(session, offering, subs, [s.amount for s in subs], f"offering:{offering.id}:cancel")
    await _apply(session, {s.id: Change(SubscriptionState.CANCELED, reason) for s in subs})
    offering.subscribed_total, offering.subscription_count = Decimal(0), 0


async def close_offering(session: AsyncSession, actor: Actor, offering_id: uuid.UUID) -> Offering:
    """Close, allocate and enqueue the mints (see the module docstring). Does not commit."""
    offering = await locked(session, offering_id)
    _check_issuer(actor, offering.issuer_id)
    transition(session, actor, offering, (OfferingState.OPEN,), OfferingState.CLOSED, "close")
    token = await session.get(Token, offering.token_id)
    assert token is not None
    subs = await _subs(session, offering.id, SubscriptionState.ACTIVE)
    mintable = await _mintable_wallets(session, token, {s.wallet for s in subs if s.wallet})
    verified = {s.id for s in subs if s.wallet in mintable}
    gone = [s for s in subs if s.id not in verified]
    await _release(session, offering, gone, [s.amount for s in gone], f"offering:{offering.id}:unverified")
    changes = {s.id: Change(SubscriptionState.REJECTED, "WALLET_NOT_VERIFIED") for s in gone}
    subs = [s for s in subs if s.id in verified]
    with localcontext(prec=100):
        lot_price = offering.price * offering.lot_size
    allocations = allocate(
        [Demand(s.id, s.seq, s.amount) for s in subs],
        lot_price=lot_price,
        hard_cap=offering.hard_cap,
        rule=offering.allocation_rule,
    )
    if sum(a.cash for a in allocations) < offering.target or not any(a.lots for a in allocations):
        await _apply(session, changes)
        await _cancel(session, actor, offering, "TARGET_NOT_REACHED")
        return offering
    allocated: list[tuple[Sub, Change]] = []
    for s, a in zip(subs, allocations):
        if a.lots == 0:
            changes[s.id] = Change(SubscriptionState.UNALLOCATED, "NOT_ALLOCATED")
            continue
        with localcontext(prec=100):
            quantity = offering.lot_size * a.lots
        changes[s.id] = change = Change(
            SubscriptionState.ALLOCATED, None, quantity, to_units(quantity, token.decimals), a.cash
        )
        allocated.append((s, change))
    mints = []
    for n, start in enumerate(range(0, len(allocated), MINT_BATCH)):
        batch = allocated[start : start + MINT_BATCH]
        ref = f"offering:{offering.id}:mint:{n}"
        mints.append(
            dict(
                kind=MINT_KIND,
                chain_id=offering.chain_id,
                contract=offering.token_address,
                abi_name="SecurityToken",
                function="batchMint",
                args=[[s.wallet for s, _ in batch], [c.units for _, c in batch]],
                business_ref=ref,
                actor_id=actor.user_id,
            )
        )
        for _, c in batch:
            c.ref = ref
    await enqueue_many(session, mints)  # one INSERT for all the batches
    await _apply(session, changes)
    offering.allocated_total = sum((a.cash for a in allocations), Decimal(0))
    transition(
        session,
        actor,
        offering,
        (OfferingState.CLOSED,),
        OfferingState.ALLOCATED,
        "allocate",
        {
            "allocated": str(offering.allocated_total),
            "subscriptions": str(len(allocated)),
            "mintBatches": str((len(allocated) + MINT_BATCH - 1) // MINT_BATCH),
        },
    )
    return offering


# what the allocation left over: all of an UNALLOCATED subscription, the rest of an allocated one (whatever its mint
# did since: SETTLED paid and FAILED released only the allocated cash)
_LEFTOVERS = """
SELECT user_id, amount - allocated_cash FROM offering_subscriptions
WHERE offering_id = $1 AND state IN ('ALLOCATED', 'UNALLOCATED', 'SETTLED', 'FAILED') AND amount > allocated_cash
ORDER BY seq"""


def _leftover_ref(offering_id: uuid.UUID) -> str:
    return f"offering:{offering_id}:leftover"


async def release_leftovers(session: AsyncSession, offering_id: uuid.UUID) -> bool:
    """Release what the allocation of a closed offering did not take (see the module docstring); False when it was
    released before or the offering was not allocated. Does not commit."""
    offering = await locked(session, offering_id)
    return await _release_leftovers(session, offering)


async def _release_leftovers(session: AsyncSession, offering: Offering) -> bool:
    if offering.state not in (OfferingState.ALLOCATED, OfferingState.SETTLED):
        return False
    conn = await pg(session)
    if await conn.fetchval("SELECT 1 FROM ledger_transactions WHERE reference = $1", _leftover_ref(offering.id)):
        return False
    rows = await conn.fetch(_LEFTOVERS, offering.id)
    legs: list[tuple[ledger.AccountRef, Decimal]] = []
    for user_id, amount in rows:
        legs += [(UserAccount(user_id, AccountKind.RESERVED), -amount), (UserAccount(user_id), amount)]
    if not legs:
        return False
    return await ledger.post(
        session, kind="RELEASE", reference=_leftover_ref(offering.id), currency=offering.quote_currency, legs=legs
    )


def platform_fee(amount: Decimal, bps: int) -> Decimal:
    with localcontext(prec=100):
        return (amount * bps / Decimal(10000)).quantize(QUANTUM, rounding=ROUND_FLOOR)


async def _batch(session: AsyncSession, op: ChainOperation) -> tuple[Offering, list[Sub]] | None:
    offering = await locked(session, uuid.UUID(op.business_ref.split(":")[1]))
    await _release_leftovers(session, offering)  # normally done right after the close: a no-op here
    subs = await _subs(session, offering.id, SubscriptionState.ALLOCATED, op.business_ref)
    return (offering, subs) if subs else None


async def _maybe_settled(session: AsyncSession, offering: Offering) -> None:
    left = await (await pg(session)).fetchval(
        "SELECT 1 FROM offering_subscriptions WHERE offering_id = $1 AND state = 'ALLOCATED' LIMIT 1", offering.id
    )
    if left is None and offering.state is OfferingState.ALLOCATED:
        transition(session, Actor(None), offering, (OfferingState.ALLOCATED,), OfferingState.SETTLED, "settle")


async def mint_confirmed(session: AsyncSession, op: ChainOperation) -> None:
    """The batch's mint is indexed and final: pay the issuer (and the platform's fee) from the reserved cash."""
    found = await _batch(session, op)
    if found is None:
        return
    offering, subs = found
    total = sum((s.allocated_cash for s in subs), Decimal(0))
    fee = platform_fee(total, offering.fee_bps)
    legs: list[tuple[ledger.AccountRef, Decimal]] = [
        (UserAccount(s.user_id, AccountKind.RESERVED), -s.allocated_cash) for s in subs
    ]
    legs.append((UserAccount(offering.issuer_id), total - fee))
    if fee:
        legs.append((Platform(AccountKind.FEES), fee))
    await ledger.post(
        session,
        kind="ISSUANCE",
        reference=f"{op.business_ref}:settle",
        currency=offering.quote_currency,
        legs=legs,
        details={"offering": str(offering.id), "tx": op.mined_tx_hash or op.tx_hash},
    )
    await _set_state(session, [s.id for s in subs], SubscriptionState.SETTLED)
    record(
        session,
        actor_id=None,
        action="offering.mint_settled",
        target_type="offering",
        target_id=offering.id,
        details={"operation": str(op.id), "subscriptions": str(len(subs)), "cash": str(total), "fee": str(fee)},
    )
    await _maybe_settled(session, offering)


async def mint_failed(session: AsyncSession, op: ChainOperation, reason: str) -> None:
    """The batch's mint failed: its investors get their allocated cash back."""
    found = await _batch(session, op)
    if found is None:
        return
    offering, subs = found
    await _release(session, offering, subs, [s.allocated_cash for s in subs], f"{op.business_ref}:failed")
    why = " ".join(reason.split())[:40] or "MINT_FAILED"
    await _set_state(session, [s.id for s in subs], SubscriptionState.FAILED, why)
    log.warning(
        "offering %s mint %s failed (%s): %d subscriptions released", offering.id, op.business_ref, why, len(subs)
    )
    record(
        session,
        actor_id=None,
        action="offering.mint_failed",
        target_type="offering",
        target_id=offering.id,
        details={"operation": str(op.id), "reason": reason[:200], "subscriptions": str(len(subs))},
    )
    await _maybe_settled(session, offering)
