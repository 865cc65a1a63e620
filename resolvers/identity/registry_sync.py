"""The identity registries follow KYC: a wallet linked by a user whose KYC is (effectively) APPROVED is registered
in every identity registry the platform's security tokens use (each distinct (chain, registry)); any other state
(SUSPENDED, EXPIRED, REJECTED or back in review, the wallet unlinked) deletes it, if the platform had registered it
(a wallet someone else registered, never linked here, is left alone).

Desired state, not events, drives it. `sync_wallets` runs in the transaction of every decision that can change it
(KYC review/suspension/expiry/resubmission, linkWallet, unlinkWallet) and in a periodic reconcile (new registries
from a new tokenization, anything missed); for each (registry, wallet) under a transaction-scoped advisory lock:

    an identity operation of this key still open (PENDING..MINED) -> nothing now: its completion handler
        (agent/effects/identity.py) re-runs the check once it is CONFIRMED/FAILED, in the executor's transaction;
    desired == indexed `identities.registered`                     -> nothing (registered with another country
                                                                      than the KYC's: updateCountry);
    otherwise                                                      -> enqueue register/delete, version n+1.

So operations of one (registry, wallet) never overlap (a delete cannot be estimated against a register still in
flight), approve -> suspend -> re-approve ends registered whatever the timing, and a burst of transitions collapses
into at most one operation in flight plus the one the final state needs. Business refs are versioned:
"identity:<chain>:<registry>:<wallet>:<n>". The lock (same key in the trigger and the handler) makes the handler see
the decision that committed while its operation was in flight.

The on-chain identity (the ONCHAINID the registry stores) is a stable per-user address derived from the user id, so
every wallet of one investor shares one identity (as T-REX's recovery expects); the platform deploys no ONCHAINID
contracts. The country is the ISO 3166-1 numeric code of the KYC country.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eth_utils import keccak, to_checksum_address
from sqlalchemy.ext.asyncio import AsyncSession

from agent.outbox import enqueue
from models.identity import KycStatus
from models.operations import UNDER_WAY_STATE_NAMES, ChainOperation
from resolvers.identity.countries import ISO_3166_NUMERIC
from resolvers.identity.kyc_states import effective_status
from resolvers.raw_sql import pg

log = logging.getLogger("rwa.identity.registry")
REGISTER, DELETE, UPDATE_COUNTRY = "identity.register", "identity.delete", "identity.update_country"
OPEN_STATES = UNDER_WAY_STATE_NAMES
# a register/delete that FAILED is tried again by a later decision or the reconcile only after this long (an operator
# may retry it at once with retryOperation), so a permanent revert does not queue a new operation every pass
RETRY_FAILED_AFTER = timedelta(minutes=15)


def onchain_identity(user_id: uuid.UUID) -> str:
    """The investor's on-chain identity address: keccak("stablerwa:onchainid:" + user id)[12:], never zero."""
    return to_checksum_address(keccak(b"stablerwa:onchainid:" + user_id.bytes)[12:])


def ref_prefix(chain_id: int, registry: str, wallet: str) -> str:
    return f"identity:{chain_id}:{registry}:{wallet}:"


def parse_ref(ref: str) -> tuple[int, str, str, int]:
    _, chain, registry, wallet, version = ref.split(":")
    return int(chain), registry, wallet, int(version)


@dataclass(frozen=True)
class Registry:
    chain_id: int
    address: str


async def registries(session: AsyncSession) -> list[Registry]:
    rows = await (await pg(session)).fetch(
        "SELECT DISTINCT chain_id, identity_registry FROM tokens WHERE kind = 'SECURITY' "
        "AND identity_registry IS NOT NULL ORDER BY chain_id, identity_registry"
    )
    return [Registry(r[0], r[1]) for r in rows]


async def wallets_of_users(session: AsyncSession, user_ids: list[uuid.UUID]) -> list[str]:
    rows = await (await pg(session)).fetch("SELECT address FROM wallets WHERE user_id = ANY($1::uuid[])", user_ids)
    return [r[0] for r in rows]


_STATE = """
SELECT (SELECT coalesce(i.registered, false) FROM identities i
        WHERE i.chain_id = $1 AND i.registry_address = $2 AND i.investor = $3) AS registered,
       (SELECT i.country FROM identities i
        WHERE i.chain_id = $1 AND i.registry_address = $2 AND i.investor = $3 AND i.registered) AS onchain_country,
       w.user_id, k.status AS kyc, k.expires_at, k.country,
       (SELECT count(*) FROM chain_operations o WHERE o.business_ref LIKE $4 || '%') AS versions,
       (SELECT count(*) FROM chain_operations o WHERE o.business_ref LIKE $4 || '%'
                                                 AND o.state::text = ANY($5::text[])
                                                 AND o.id IS DISTINCT FROM $6) AS open,
       EXISTS (SELECT 1 FROM chain_operations o WHERE o.business_ref LIKE $4 || '%' AND o.kind = 'identity.register'
                                                 AND o.state = 'CONFIRMED') AS ours,
       last.kind AS last_kind, last.state::text AS last_state, last.updated_at AS last_at
FROM (SELECT 1) one
LEFT JOIN LATERAL (SELECT o.kind, o.state, o.updated_at FROM chain_operations o WHERE o.business_ref LIKE $4 || '%'
                   ORDER BY o.created_at DESC LIMIT 1) last ON true
LEFT JOIN wallets w ON w.address = $3
LEFT JOIN kyc_cases k ON k.user_id = w.user_id"""


async def sync_one(
    session: AsyncSession,
    chain_id: int,
    registry: str,
    wallet: str,
    *,
    actor_id: uuid.UUID | None = None,
    now: datetime | None = None,
    completed: ChainOperation | None = None,
    failed: bool = False,
) -> ChainOperation | None:
    """Bring one (registry, wallet) towards its desired state (see the module docstring). `completed`: the
    operation of this key whose completion handler is calling (counted as finished whatever its row says yet);
    when it `failed`, its direction is not re-enqueued automatically (no retry loop on a permanent revert; the
    reconcile or an operator's retryOperation takes it up). Returns the operation enqueued, if any. No commit."""
    conn = await pg(session)
    prefix = ref_prefix(chain_id, registry, wallet)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", prefix)
    r = await conn.fetchrow(
        _STATE, chain_id, registry, wallet, prefix, list(OPEN_STATES), completed.id if completed is not None else None
    )
    if r["open"]:
        return None
    now = now or datetime.now(UTC)
    approved = (
        r["kyc"] is not None and effective_status(KycStatus(r["kyc"]), r["expires_at"], now) is KycStatus.APPROVED
    )
    registered = bool(r["registered"])
    country = ISO_3166_NUMERIC.get(r["country"] or "")
    args: list
    if approved and registered:
        # registered with another country (by hand, or before a new KYC): the registry follows the KYC country.
        # An unknown on-chain country (NULL: the indexer could not read it) is left alone rather than rewritten.
        if country is None or r["onchain_country"] is None or int(r["onchain_country"]) == country:
            return None
        kind, function, args = UPDATE_COUNTRY, "updateCountry", [wallet, country]
    elif approved == registered:
        return None
    elif approved:
        if country is None:
            log.error("cannot register %s: KYC country %r has no ISO 3166 numeric code", wallet, r["country"])
            return None
        kind, function = REGISTER, "registerIdentity"
        args = [wallet, onchain_identity(r["user_id"]), country]
    else:
        ours = r["ours"] or (completed is not None and not failed and completed.kind == REGISTER)
        if r["user_id"] is None and not ours:
            return None  # never linked here, never registered by us: not the platform's to delete
        kind, function, args = DELETE, "deleteIdentity", [wallet]
    if failed and completed is not None and kind == completed.kind:
        return None
    if (
        completed is None
        and r["last_kind"] == kind
        and r["last_state"] in ("FAILED", "CANCELED")
        and r["last_at"] is not None
        and now - r["last_at"] < RETRY_FAILED_AFTER
    ):
        return None  # the same change just failed (e.g. the agent is not an agent of that registry): back off
    op = await enqueue(
        session,
        kind=kind,
        chain_id=chain_id,
        contract=registry,
        abi_name="IdentityRegistry",
        function=function,
        args=args,
        business_ref=f"{prefix}{int(r['versions']) + 1}",
        actor_id=actor_id,
    )
    log.info("identity %s of %s in %s on chain %s queued (%s)", function, wallet, registry, chain_id, op.business_ref)
    return op


async def sync_wallets(
    session: AsyncSession, wallets: list[str], *, actor_id: uuid.UUID | None = None, only: list[Registry] | None = None
) -> list[ChainOperation]:
    """`sync_one` for every wallet in every registry (or `only` these), keys locked in one sorted order so two
    decisions never deadlock. Does not commit."""
    if not wallets:
        return []
    ops = []
    for reg in sorted(
        only if only is not None else await registries(session), key=lambda g: ref_prefix(g.chain_id, g.address, "")
    ):
        for wallet in sorted(set(wallets)):
            op = await sync_one(session, reg.chain_id, reg.address, wallet, actor_id=actor_id)
            if op is not None:
                ops.append(op)
    return ops


async def sync_users(
    session: AsyncSession, user_ids: list[uuid.UUID], *, actor_id: uuid.UUID | None = None
) -> list[ChainOperation]:
    return await sync_wallets(session, await wallets_of_users(session, user_ids), actor_id=actor_id)


# (registry, wallet) pairs whose indexed state differs from the desired one: approved wallets not registered, and
# registered wallets that are linked here but not approved (or registered by us and since unlinked)
_DRIFT = """
WITH r AS (SELECT DISTINCT chain_id, identity_registry AS registry FROM tokens
           WHERE kind = 'SECURITY' AND identity_registry IS NOT NULL),
     approved AS (SELECT w.address FROM wallets w JOIN kyc_cases k ON k.user_id = w.user_id
                  WHERE k.status = 'APPROVED' AND (k.expires_at IS NULL OR k.expires_at > $1))
SELECT r.chain_id, r.registry, a.address FROM r CROSS JOIN approved a
WHERE NOT EXISTS (SELECT 1 FROM identities i WHERE i.chain_id = r.chain_id AND i.registry_address = r.registry
                                               AND i.investor = a.address AND i.registered)
UNION
SELECT i.chain_id, i.registry_address, i.investor FROM identities i JOIN r ON r.chain_id = i.chain_id
                                                                      AND r.registry = i.registry_address
WHERE i.registered AND i.investor NOT IN (SELECT address FROM approved)
  AND (EXISTS (SELECT 1 FROM wallets w WHERE w.address = i.investor)
       OR EXISTS (SELECT 1 FROM chain_operations o
                  WHERE o.business_ref LIKE 'identity:' || i.chain_id || ':' || i.registry_address || ':'
                                            || i.investor || ':%'))
UNION
SELECT i.chain_id, i.registry_address, i.investor FROM identities i
JOIN r ON r.chain_id = i.chain_id AND r.registry = i.registry_address
JOIN wallets w ON w.address = i.investor
JOIN kyc_cases k ON k.user_id = w.user_id AND k.status = 'APPROVED' AND (k.expires_at IS NULL OR k.expires_at > $1)
JOIN unnest($3::text[], $4::int[]) AS c(alpha2, num) ON c.alpha2 = k.country
WHERE i.registered AND i.country IS NOT NULL AND i.country <> c.num
ORDER BY 1, 2, 3
LIMIT $2"""


async def reconcile(session: AsyncSession, *, limit: int = 500, now: datetime | None = None) -> int:
    """One pass over the drift between KYC and the indexed registries (a new token's registry, a missed trigger):
    `sync_one` for each drifting key (it skips keys with an operation in flight). Returns the operations queued.
    Does not commit."""
    now = now or datetime.now(UTC)
    rows = await (await pg(session)).fetch(_DRIFT, now, limit, list(ISO_3166_NUMERIC), list(ISO_3166_NUMERIC.values()))
    n = 0
    for chain_id, registry, wallet in rows:
        if await sync_one(session, chain_id, registry, wallet, now=now) is not None:
            n += 1
    return n
