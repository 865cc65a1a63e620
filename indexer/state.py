"""Derived state (holdings, token supply/paused, identities), kept in step with the raw rows.

Two mechanisms, both set-based SQL on the writer's connection, inside the caller's transaction:
- balances and total supply are sums: newly inserted transfers add their deltas, rolled-back
  transfers subtract them (``apply_transfer_deltas`` over a CTE that inserts or deletes);
- freeze flags/amounts, paused and identity entries are recomputed for the touched keys from
  the latest raw events still stored (``recompute_*``), so the result does not depend on the
  order in which ranges were written or rolled back.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from indexer.events import ZERO_ADDRESS

# $1 chain_id. ``source`` is a data-modifying statement RETURNING token_address, from_address,
# to_address, value, block_number; ``sign`` is +1 for inserts and -1 for deletions.
_DELTAS_SQL = """
WITH moved AS ({source}),
d AS (
    SELECT token_address, from_address AS holder, -value AS delta, block_number FROM moved
    WHERE from_address <> '{zero}'
    UNION ALL
    SELECT token_address, to_address, value, block_number FROM moved WHERE to_address <> '{zero}'
),
agg AS (
    SELECT token_address, holder, sum(delta) * {sign} AS delta, max(block_number) AS blk
    FROM d GROUP BY token_address, holder
),
h AS (
    INSERT INTO holdings AS t (chain_id, token_address, holder, balance, frozen_amount, frozen, updated_block)
    SELECT $1, token_address, holder, delta, 0, false, blk FROM agg
    ON CONFLICT (chain_id, token_address, holder) DO UPDATE
        SET balance = t.balance + excluded.balance,
            updated_block = greatest(t.updated_block, excluded.updated_block)
    RETURNING 1
),
supply AS (
    SELECT token_address,
           (sum(CASE WHEN from_address = '{zero}' THEN value ELSE 0 END)
            - sum(CASE WHEN to_address = '{zero}' THEN value ELSE 0 END)) * {sign} AS minted
    FROM moved GROUP BY token_address
),
s AS (
    UPDATE tokens t SET total_supply = t.total_supply + supply.minted, updated_at = now()
    FROM supply WHERE t.chain_id = $1 AND lower(t.address) = lower(supply.token_address) AND supply.minted <> 0
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved) AS transfers, (SELECT count(*) FROM h) AS holdings
"""

# After a rollback above $2: a holding last written above it gets the block of the newest event still
# stored for it, and a zero row nothing refers to any more (its only transfer was rolled back) goes, so
# the table is what indexing the surviving events alone writes. Only rows with updated_block > $2 can
# have been touched by the rolled-back events, so the reorg window bounds the work.
_SETTLE_HOLDINGS_SQL = """
WITH k AS (
    SELECT h.token_address, h.holder, greatest(
        (SELECT max(t.block_number) FROM token_transfers t WHERE t.chain_id = $1
            AND t.token_address = h.token_address AND t.from_address = h.holder),
        (SELECT max(t.block_number) FROM token_transfers t WHERE t.chain_id = $1
            AND t.token_address = h.token_address AND t.to_address = h.holder),
        (SELECT max(e.block_number) FROM chain_events e WHERE e.chain_id = $1
            AND e.address = h.token_address AND e.subject = h.holder)) AS blk
    FROM holdings h WHERE h.chain_id = $1 AND h.updated_block > $2
),
gone AS (
    DELETE FROM holdings h USING k
    WHERE h.chain_id = $1 AND h.token_address = k.token_address AND h.holder = k.holder AND k.blk IS NULL
      AND h.balance = 0 AND h.frozen_amount = 0 AND NOT h.frozen
    RETURNING 1
)
UPDATE holdings h SET updated_block = k.blk FROM k
WHERE h.chain_id = $1 AND h.token_address = k.token_address AND h.holder = k.holder
  AND k.blk IS NOT NULL AND h.updated_block <> k.blk
"""


async def settle_holdings_above(conn: asyncpg.Connection, chain_id: int, ancestor: int) -> None:
    """Call last in a rollback to ``ancestor`` (after transfers and events above it are gone)."""
    await conn.execute(_SETTLE_HOLDINGS_SQL, chain_id, ancestor)


_TRANSFER_COLS = "token_address, from_address, to_address, value, block_number"

INSERT_TRANSFERS_SQL = _DELTAS_SQL.format(
    source=f"INSERT INTO token_transfers SELECT * FROM _tt ON CONFLICT DO NOTHING RETURNING {_TRANSFER_COLS}",
    zero=ZERO_ADDRESS,
    sign=1,
)
# $2: roll back transfers above this block.
DELETE_TRANSFERS_SQL = _DELTAS_SQL.format(
    source=f"DELETE FROM token_transfers WHERE chain_id = $1 AND block_number > $2 RETURNING {_TRANSFER_COLS}",
    zero=ZERO_ADDRESS,
    sign=-1,
)

_RECOMPUTE_HOLDINGS_SQL = """
INSERT INTO holdings AS t (chain_id, token_address, holder, balance, frozen_amount, frozen, updated_block)
SELECT $1, k.token, k.holder, 0,
    coalesce((SELECT sum(CASE WHEN e.event = 'TokensFrozen' THEN (e.args->>'amount')::numeric
                              ELSE -(e.args->>'amount')::numeric END)
              FROM chain_events e
              WHERE e.chain_id = $1 AND e.address = k.token AND e.subject = k.holder
                AND e.event IN ('TokensFrozen', 'TokensUnfrozen')), 0),
    coalesce((SELECT (e.args->>'frozen')::boolean FROM chain_events e
              WHERE e.chain_id = $1 AND e.address = k.token AND e.subject = k.holder AND e.event = 'AddressFrozen'
              ORDER BY e.block_number DESC, e.log_index DESC LIMIT 1), false),
    coalesce((SELECT max(e.block_number) FROM chain_events e
              WHERE e.chain_id = $1 AND e.address = k.token AND e.subject = k.holder), 0)
FROM unnest($2::text[], $3::text[]) AS k(token, holder)
ON CONFLICT (chain_id, token_address, holder) DO UPDATE
    SET frozen_amount = excluded.frozen_amount, frozen = excluded.frozen,
        updated_block = greatest(t.updated_block, excluded.updated_block)
"""

# Token addresses are matched case-insensitively: rows written by other code may not be checksummed.
_RECOMPUTE_PAUSED_SQL = """
UPDATE tokens t SET updated_at = now(), paused = coalesce(
    (SELECT e.event = 'Paused' FROM chain_events e
     WHERE e.chain_id = $1 AND e.address = u.token AND e.subject = u.token AND e.event IN ('Paused', 'Unpaused')
     ORDER BY e.block_number DESC, e.log_index DESC LIMIT 1), false)
FROM unnest($2::text[]) AS u(token)
WHERE t.chain_id = $1 AND lower(t.address) = lower(u.token)
"""

_LATEST_IDENTITY_SQL = """
SELECT k.registry, k.investor, r.event, r.identity, r.block_number, c.country, c.source
FROM unnest($2::text[], $3::text[]) AS k(registry, investor)
LEFT JOIN LATERAL (
    SELECT e.event, e.args->>'identity' AS identity, e.block_number FROM chain_events e
    WHERE e.chain_id = $1 AND e.address = k.registry AND e.subject = k.investor
      AND e.event IN ('IdentityRegistered', 'IdentityRemoved')
    ORDER BY e.block_number DESC, e.log_index DESC LIMIT 1) r ON true
LEFT JOIN LATERAL (
    SELECT CASE WHEN e.event = 'IdentityRemoved' THEN NULL ELSE (e.args->>'country')::int END AS country,
           coalesce(e.args->>'countrySource', 'EVENT') AS source
    FROM chain_events e
    WHERE e.chain_id = $1 AND e.address = k.registry AND e.subject = k.investor
      AND e.event IN ('IdentityRegistered', 'IdentityRemoved', 'CountryUpdated')
    ORDER BY e.block_number DESC, e.log_index DESC LIMIT 1) c ON true
"""

# One statement for all keys (was: fetch, then one upsert per investor through executemany: 5,000
# registrations in a batch were 5,000 statements). An investor with no event left (rolled back) goes.
_RECOMPUTE_IDENTITIES_SQL = f"""
WITH latest AS ({_LATEST_IDENTITY_SQL}),
up AS (
    INSERT INTO identities AS t (chain_id, registry_address, investor, identity, country, registered, updated_block,
                                 country_source)
    SELECT $1, l.registry, l.investor, CASE WHEN l.event = 'IdentityRegistered' THEN l.identity END, l.country,
           l.event = 'IdentityRegistered', l.block_number, coalesce(l.source, 'EVENT')
    FROM latest l WHERE l.event IS NOT NULL
    ON CONFLICT (chain_id, registry_address, investor) DO UPDATE
        SET identity = excluded.identity, country = excluded.country, registered = excluded.registered,
            updated_block = excluded.updated_block, country_source = excluded.country_source
    RETURNING 1
)
DELETE FROM identities i USING latest l
WHERE l.event IS NULL AND i.chain_id = $1 AND i.registry_address = l.registry AND i.investor = l.investor
"""


def _split(keys: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    pairs = sorted(set(keys))
    return [a for a, _ in pairs], [b for _, b in pairs]


async def recompute_holdings(conn: asyncpg.Connection, chain_id: int, keys: Iterable[tuple[str, str]]) -> None:
    tokens, holders = _split(keys)
    if tokens:
        await conn.execute(_RECOMPUTE_HOLDINGS_SQL, chain_id, tokens, holders)


async def recompute_paused(conn: asyncpg.Connection, chain_id: int, tokens: Iterable[str]) -> None:
    tokens = sorted(set(tokens))
    if tokens:
        await conn.execute(_RECOMPUTE_PAUSED_SQL, chain_id, tokens)


async def recompute_identities(conn: asyncpg.Connection, chain_id: int, keys: Iterable[tuple[str, str]]) -> None:
    registries, investors = _split(keys)
    if registries:
        await conn.execute(_RECOMPUTE_IDENTITIES_SQL, chain_id, registries, investors)


async def recompute_for_events(
    conn: asyncpg.Connection, chain_id: int, touched: Iterable[tuple[str, str, str | None]]
) -> None:
    """Recompute the state keyed by (event, emitter, subject) rows just inserted or deleted."""
    holdings: set[tuple[str, str]] = set()
    paused: set[str] = set()
    identities: set[tuple[str, str]] = set()
    for event, address, subject in touched:
        if subject is None:
            continue
        if event in ("AddressFrozen", "TokensFrozen", "TokensUnfrozen"):
            holdings.add((address, subject))
        elif event in ("Paused", "Unpaused"):
            paused.add(address)
        elif event in ("IdentityRegistered", "IdentityRemoved", "CountryUpdated"):
            identities.add((address, subject))
    await recompute_holdings(conn, chain_id, holdings)
    await recompute_paused(conn, chain_id, paused)
    await recompute_identities(conn, chain_id, identities)
