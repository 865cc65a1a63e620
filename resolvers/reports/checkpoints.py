"""Cap table checkpoints: a security token's balances at a finalized block, every CHECKPOINT_EVERY transfers.

Without them a cap table at a block in the middle of a long history reads half of it (FORWARD or REVERSE, see
cap_table.py); with them it reads the nearest checkpoint at or below the block plus the transfers in between: at
most the holders + CHECKPOINT_EVERY rows.

`write_checkpoints` (the worker's `checkpoint_cap_tables`, every CHECKPOINT_INTERVAL_S) walks each security token
from its last checkpoint: the block of the CHECKPOINT_EVERY-th transfer after it becomes the next checkpoint, its
balances = the previous checkpoint's + the transfers in between (one INSERT ... SELECT), while such a block is at or
below both the chain's finalized block and the token's gap-free indexed block: a reorg never reaches it (a deeper one
stops the indexer) and no backfill can add a transfer under it. One transaction per checkpoint; the checkpoint row is
written last, so a crash leaves no half checkpoint visible (balances without their row are ignored and overwritten).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from chains.inputs import ZERO_ADDRESS
from models.index_status import indexed_block_for
from resolvers.raw_sql import pg

log = logging.getLogger("rwa.reports")

CHECKPOINT_EVERY = 100_000  # transfers of a token between two checkpoints
CHECKPOINT_INTERVAL_S = 60.0
MAX_PER_RUN = 20  # checkpoints per token and run (a long history catches up over a few runs)

_TOKENS = "SELECT chain_id, address FROM tokens WHERE kind = 'SECURITY' ORDER BY chain_id, address"
_LAST = """
SELECT block_number FROM cap_table_checkpoints WHERE chain_id = $1 AND token_address = $2
ORDER BY block_number DESC LIMIT 1"""
_FINALIZED = "SELECT finalized_block FROM indexer_cursors WHERE chain_id = $1"
# the block of the $5-th transfer after block $3, at most block $4
_NEXT = """
SELECT block_number FROM token_transfers WHERE chain_id = $1 AND token_address = $2 AND block_number > $3
  AND block_number <= $4
ORDER BY block_number, log_index OFFSET $5 - 1 LIMIT 1"""
_CLEAR = """
DELETE FROM cap_table_checkpoint_balances WHERE chain_id = $1 AND token_address = $2 AND block_number = $3"""
_BALANCES = f"""
INSERT INTO cap_table_checkpoint_balances (chain_id, token_address, block_number, holder, balance)
SELECT $1, $2, $4, m.holder, sum(m.delta) FROM (
    SELECT holder, balance AS delta FROM cap_table_checkpoint_balances
    WHERE chain_id = $1 AND token_address = $2 AND block_number = $3
    UNION ALL
    SELECT v.holder, v.delta
    FROM token_transfers t
    CROSS JOIN LATERAL (VALUES (t.to_address, t.value), (t.from_address, -t.value)) AS v(holder, delta)
    WHERE t.chain_id = $1 AND t.token_address = $2 AND t.block_number > $3 AND t.block_number <= $4
) m
WHERE m.holder <> '{ZERO_ADDRESS}'
GROUP BY m.holder HAVING sum(m.delta) <> 0"""
_MARK = """
INSERT INTO cap_table_checkpoints (chain_id, token_address, block_number, holders) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING"""


@dataclass(frozen=True, slots=True)
class Written:
    chain_id: int
    token: str
    block: int
    holders: int


async def write_token_checkpoints(
    session: AsyncSession, chain_id: int, token: str, *, every: int = CHECKPOINT_EVERY, max_count: int = MAX_PER_RUN
) -> list[Written]:
    """Checkpoints of one token up to its safe limit; each committed on its own."""
    written: list[Written] = []
    for _ in range(max_count):
        conn = await pg(session)
        finalized = await conn.fetchval(_FINALIZED, chain_id)
        indexed = await indexed_block_for(session, chain_id, token)
        if finalized is None or indexed is None:
            break
        limit = min(int(finalized), indexed)
        last = await conn.fetchval(_LAST, chain_id, token)
        previous = -1 if last is None else int(last)
        block = await conn.fetchval(_NEXT, chain_id, token, previous, limit, every)
        if block is None:
            break
        await conn.execute(_CLEAR, chain_id, token, block)
        status = await conn.execute(_BALANCES, chain_id, token, previous, block)
        holders = int(status.rsplit(" ", 1)[-1])
        await conn.execute(_MARK, chain_id, token, block, holders)
        # a job loop: each checkpoint is committed on its own
        await session.commit()
        written.append(Written(chain_id, token, int(block), holders))
    return written


async def write_checkpoints(
    session: AsyncSession, *, every: int = CHECKPOINT_EVERY, max_per_token: int = MAX_PER_RUN
) -> list[Written]:
    tokens = [(r["chain_id"], r["address"]) for r in await (await pg(session)).fetch(_TOKENS)]
    # a job loop: the token list is read in its own transaction
    await session.commit()
    written: list[Written] = []
    for chain_id, token in tokens:
        written += await write_token_checkpoints(session, chain_id, token, every=every, max_count=max_per_token)
    if written:
        log.info("wrote %d cap table checkpoint(s)", len(written))
    return written
