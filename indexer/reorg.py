"""Reorgs: find the common ancestor by block hash, roll back above it in one transaction, notify.

The blocks table holds every block above the finalized one (a parent-hash chain) plus the
blocks with events and batch ends below it. The ancestor is the highest stored block whose hash
the node still serves; everything above it (raw events, transfers, blocks, intervals) is deleted,
balances get the inverse deltas, freeze/pause/identity state is recomputed from what remains, and
the cursor moves back, all in one transaction. The follower then re-fetches.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:  # redis is imported where used: `rwa index backfill` never connects to it
    from redis.asyncio import Redis

from chains.rpc import RpcClient
from indexer import intervals
from indexer.errors import ReorgTooDeep
from indexer.state import DELETE_TRANSFERS_SQL, recompute_for_events, settle_holdings_above

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rollback:
    chain_id: int
    from_block: int  # old indexed block
    common_ancestor: int

    @property
    def depth(self) -> int:
        return self.from_block - self.common_ancestor

    def notice(self) -> dict[str, int]:
        return {
            "chainId": self.chain_id,
            "depth": self.depth,
            "fromBlock": self.common_ancestor + 1,
            "commonAncestor": self.common_ancestor,
        }


async def find_common_ancestor(
    conn: asyncpg.Connection,
    client: RpcClient,
    chain_id: int,
    indexed_block: int,
    max_depth: int,
    finalized_floor: int | None,
) -> tuple[int, str]:
    """(number, hash) of the highest stored block the node still has, within ``max_depth``.

    Only a proven hash mismatch walks down: a stored block the node answers null for (a lagging or
    load-balanced node) raises BlockUnavailable, transient, so the caller retries later instead of
    rolling back or stopping. ReorgTooDeep if no stored block matches, or if the ancestor lies below
    ``finalized_floor`` (the rollback would remove a block recorded as finalized: never roll back
    finalized data automatically). The floor only matters for what must be rolled back: the caller
    passes the finalized block recorded while its indexed chain was last verified.
    """
    rows = await conn.fetch(
        "SELECT number, hash FROM blocks WHERE chain_id = $1 AND number <= $2 AND number >= $3 ORDER BY number DESC",
        chain_id,
        indexed_block,
        indexed_block - max_depth,
    )
    if not rows:
        raise ReorgTooDeep(chain_id, indexed_block, f"no stored block within {max_depth} blocks")
    node_blocks = await client.get_blocks([r["number"] for r in rows], require=True)
    for r, blk in zip(rows, node_blocks):
        if blk is not None and blk["hash"] == r["hash"]:
            if finalized_floor is not None and r["number"] < finalized_floor:
                raise ReorgTooDeep(
                    chain_id, indexed_block, f"common ancestor {r['number']} is below finalized block {finalized_floor}"
                )
            return r["number"], r["hash"]
    raise ReorgTooDeep(
        chain_id, indexed_block, f"no common ancestor within {max_depth} blocks (lowest checked {rows[-1]['number']})"
    )


async def find_divergence(
    conn: asyncpg.Connection, client: RpcClient, chain_id: int, lo: int, hi: int, limit: int = 1_000
) -> int | None:
    """The lowest stored block in [lo, hi] whose hash the node does not serve at that height, or None.

    The periodic self-check: the cursor check only looks at the cursor's block, but stored blocks above
    or below it (a catch-up or backfill range, a batch written from another fork) can disagree with the
    node too. A null answer is BlockUnavailable (transient), never a divergence."""
    rows = await conn.fetch(
        "SELECT number, hash FROM blocks WHERE chain_id = $1 AND number BETWEEN $2 AND $3 ORDER BY number LIMIT $4",
        chain_id,
        lo,
        hi,
        limit,
    )
    if not rows:
        return None
    node_blocks = await client.get_blocks([r["number"] for r in rows], require=True)
    for r, blk in zip(rows, node_blocks):
        if blk is not None and blk["hash"] != r["hash"]:
            return int(r["number"])
    return None


async def rollback(conn: asyncpg.Connection, chain_id: int, ancestor: int, ancestor_hash: str) -> Rollback:
    """Delete everything above ``ancestor`` and move the cursor there (never up), in one transaction."""
    async with conn.transaction():
        cur = await conn.fetchrow("SELECT indexed_block FROM indexer_cursors WHERE chain_id = $1 FOR UPDATE", chain_id)
        old = max(cur["indexed_block"], ancestor) if cur else ancestor
        await conn.fetchrow(DELETE_TRANSFERS_SQL, chain_id, ancestor)
        touched = await conn.fetch(
            "DELETE FROM chain_events WHERE chain_id = $1 AND block_number > $2 AND subject IS NOT NULL "
            "RETURNING event, address, subject",
            chain_id,
            ancestor,
        )
        await conn.execute("DELETE FROM chain_events WHERE chain_id = $1 AND block_number > $2", chain_id, ancestor)
        await recompute_for_events(conn, chain_id, {(r["event"], r["address"], r["subject"]) for r in touched})
        await settle_holdings_above(conn, chain_id, ancestor)  # no stale updated_block, no orphan zero rows
        await conn.execute("DELETE FROM blocks WHERE chain_id = $1 AND number > $2", chain_id, ancestor)
        await intervals.truncate_above(conn, chain_id, ancestor)
        await conn.execute(
            "UPDATE indexer_cursors SET indexed_block = $2, indexed_hash = $3, updated_at = now() "
            "WHERE chain_id = $1 AND indexed_block >= $2",  # a divergence above the cursor leaves it where it is
            chain_id,
            ancestor,
            ancestor_hash,
        )
    return Rollback(chain_id, old, ancestor)


def reorg_channel(prefix: str, chain_id: int) -> str:
    return f"{prefix}chain:{chain_id}:reorg"


async def publish_reorg(redis: Redis | None, prefix: str, rb: Rollback) -> None:
    """Tell live subscribers (best effort: the database is already consistent)."""
    if redis is None:
        return
    try:
        await redis.publish(reorg_channel(prefix, rb.chain_id), json.dumps(rb.notice()))
    except Exception:  # noqa: BLE001 - a Redis outage must not stop indexing
        log.warning("could not publish reorg notice for chain %s", rb.chain_id, exc_info=True)
