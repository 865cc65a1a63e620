"""Indexer status for the API: the database side of `rwa index status` (no node is called per request).

The node head shown is the cursor's `head_block`, written by the indexer each time it polls the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from chains.registry import all_chains
from models.index_status import DEFAULT_WINDOW_BLOCKS, BackfillRequestStatus, read_cursor_status
from resolvers.holdings import parse_chain_id


@dataclass(frozen=True, slots=True)
class ChainStatusRow:
    chain_id: int
    chain: str
    head_block: int | None
    safe_block: int | None
    finalized_block: int | None
    indexed_block: int | None
    lag: int | None
    recent_events: int
    window_blocks: int
    events_per_second: float | None
    updated_at: datetime | None
    state: str = "not indexed"
    stopped_reason: str | None = None
    error_count: int = 0
    last_error: str | None = None
    backfills: tuple[BackfillRequestStatus, ...] = ()


async def indexer_status(
    session: AsyncSession, chain_id: int | None = None, window_blocks: int = DEFAULT_WINDOW_BLOCKS
) -> list[ChainStatusRow]:
    """Every supported chain (or one), whether or not it has been indexed yet."""
    specs = (
        list(all_chains()) if chain_id is None else [s for s in all_chains() if s.chain_id == parse_chain_id(chain_id)]
    )
    cursors = await read_cursor_status(session, [s.chain_id for s in specs], window_blocks)
    return [
        ChainStatusRow(
            chain_id=s.chain_id,
            chain=s.short_name,
            head_block=c.head_block,
            safe_block=c.safe_block,
            finalized_block=c.finalized_block,
            indexed_block=c.indexed_block,
            lag=c.lag,
            recent_events=c.recent_events,
            window_blocks=c.window_blocks,
            events_per_second=c.events_per_second,
            updated_at=c.updated_at,
            state=c.state,
            stopped_reason=c.stopped_reason,
            error_count=c.error_count,
            last_error=c.last_error,
            backfills=c.backfills,
        )
        for s, c in zip(specs, cursors)
    ]
