"""A wallet's standing in the identity registries of the platform's tokens, as the indexer saw it on chain.

One row per distinct (chain, registry) that a security token of the platform checks transfers against, whether the
wallet is listed there or not: `verified` is the indexed `identities.registered` (IdentityRegistered minus
IdentityRemoved), `country` the ISO 3166-1 numeric code the registry stores, `pending` whether an identity
operation for this (registry, wallet) is still on its way to the chain (agent outbox), so clients can show
"registering..." instead of a bare "not verified".
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from models.operations import UNDER_WAY_STATE_NAMES
from resolvers.raw_sql import pg


@dataclass(frozen=True, slots=True)
class Verification:
    address: str
    chain_id: int
    registry: str
    verified: bool
    identity: str | None
    country: int | None
    updated_block: int | None
    pending: bool


_READ = """
WITH r AS (SELECT DISTINCT chain_id, identity_registry AS registry FROM tokens
           WHERE kind = 'SECURITY' AND identity_registry IS NOT NULL)
SELECT w.address, r.chain_id, r.registry, coalesce(i.registered, false) AS verified,
       CASE WHEN i.registered THEN i.identity END AS identity, CASE WHEN i.registered THEN i.country END AS country,
       i.updated_block,
       EXISTS (SELECT 1 FROM chain_operations o
               WHERE o.business_ref LIKE 'identity:' || r.chain_id || ':' || r.registry || ':' || w.address || ':%'
                 AND o.state::text = ANY($2::text[])) AS pending
FROM unnest($1::text[]) AS w(address)
CROSS JOIN r
LEFT JOIN identities i ON i.chain_id = r.chain_id AND i.registry_address = r.registry AND i.investor = w.address
ORDER BY w.address, r.chain_id, r.registry"""


async def verifications_of(session: AsyncSession, addresses: list[str]) -> dict[str, list[Verification]]:
    """address -> its verifications, for every registry of the platform's security tokens."""
    out: dict[str, list[Verification]] = {a: [] for a in addresses}
    if not addresses:
        return out
    for r in await (await pg(session)).fetch(_READ, addresses, list(UNDER_WAY_STATE_NAMES)):
        out[r["address"]].append(
            Verification(
                r["address"],
                r["chain_id"],
                r["registry"],
                r["verified"],
                r["identity"],
                r["country"],
                r["updated_block"],
                r["pending"],
            )
        )
    return out
