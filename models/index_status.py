"""What the indexer's tables say about each chain: its cursor, health, recent event rate, backfill requests, and
how far a token's history is indexed. Database reads only (no node is called), shared by the API (`indexerStatus`,
holdings and reports as of the indexed block) and the indexer's own `rwa index status` / `verify`: it lives below
both so that neither imports the other.

"Recent events/s" is measured in chain time: events stored in the last `window_blocks` indexed blocks,
divided by the seconds between the first and last stored block of that window. It says how busy the
indexed contracts are, and stays meaningful whether the indexer is backfilling or following the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.chain import BackfillRequest, Block, ChainEvent, FetchedInterval, IndexerCursor

FAILING_AFTER = 3  # consecutive failed steps before a chain is reported failing (one blip is not news)
DEFAULT_WINDOW_BLOCKS = 100


@dataclass(frozen=True, slots=True)
class CursorStatus:
    """The database side of one chain. Every block number is None until the indexer wrote a cursor."""

    chain_id: int
    indexed_block: int | None
    head_block: int | None  # as last seen by the indexer
    safe_block: int | None
    finalized_block: int | None
    updated_at: datetime | None
    recent_events: int
    window_blocks: int
    events_per_second: float | None
    # health (indexer/health.py) and the chain's backfill requests (unfinished + the last few)
    state: str = "not indexed"
    stopped_reason: str | None = None
    error_count: int = 0
    last_error: str | None = None
    backfills: tuple[BackfillRequestStatus, ...] = ()

    @property
    def lag(self) -> int | None:
        if self.head_block is None or self.indexed_block is None:
            return None
        return max(self.head_block - self.indexed_block, 0)


async def read_cursor_status(
    session: AsyncSession, chain_ids: Sequence[int], window_blocks: int = DEFAULT_WINDOW_BLOCKS
) -> list[CursorStatus]:
    """One CursorStatus per chain id, in the order given (3 small indexed queries per chain with a cursor)."""
    rows = (
        await session.execute(
            select(
                IndexerCursor.chain_id,
                IndexerCursor.indexed_block,
                IndexerCursor.head_block,
                IndexerCursor.safe_block,
                IndexerCursor.finalized_block,
                IndexerCursor.updated_at,
                IndexerCursor.stopped_reason,
                IndexerCursor.error_count,
                IndexerCursor.last_error,
            ).where(IndexerCursor.chain_id.in_(list(chain_ids)))
        )
    ).all()
    by_chain = {r.chain_id: r for r in rows}
    requests = await _backfills(session, list(chain_ids))
    out: list[CursorStatus] = []
    for chain_id in chain_ids:
        row = by_chain.get(chain_id)
        indexed = row.indexed_block if row is not None and row.indexed_block >= 0 else None
        events, rate = 0, None
        if indexed is not None:
            events, rate = await _recent_rate(session, chain_id, indexed, window_blocks)
        out.append(
            CursorStatus(
                chain_id=chain_id,
                indexed_block=indexed,
                head_block=row.head_block if row is not None else None,
                safe_block=row.safe_block if row is not None else None,
                finalized_block=row.finalized_block if row is not None else None,
                updated_at=row.updated_at if row is not None else None,
                recent_events=events,
                window_blocks=window_blocks,
                events_per_second=rate,
                state=state_of(
                    row.stopped_reason if row is not None else None, row.error_count if row is not None else 0, indexed
                ),
                stopped_reason=row.stopped_reason if row is not None else None,
                error_count=row.error_count if row is not None else 0,
                last_error=row.last_error if row is not None else None,
                backfills=tuple(requests.get(chain_id, ())),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class BackfillRequestStatus:
    """One `rwa index backfill` handed to the running writer (indexer/backfill_requests.py)."""

    id: int
    token: str | None
    from_block: int
    to_block: int | None
    state: str  # PENDING | RUNNING | DONE | FAILED | CANCELLED
    blocks_done: int
    blocks_total: int | None
    events: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        d["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return d


async def _backfills(
    session: AsyncSession, chain_ids: list[int], recent: int = 3
) -> dict[int, list[BackfillRequestStatus]]:
    """Per chain: every unfinished request and the last ``recent`` finished ones, oldest first."""
    ranked = (
        select(
            BackfillRequest,
            func.row_number()
            .over(partition_by=BackfillRequest.chain_id, order_by=BackfillRequest.id.desc())
            .label("n"),
        )
        .where(BackfillRequest.chain_id.in_(chain_ids))
        .subquery()
    )
    rows = (
        await session.execute(
            select(ranked)
            .where((ranked.c.state.in_(("PENDING", "RUNNING"))) | (ranked.c.n <= recent))
            .order_by(ranked.c.chain_id, ranked.c.id)
        )
    ).all()
    out: dict[int, list[BackfillRequestStatus]] = {}
    for r in rows:
        out.setdefault(r.chain_id, []).append(
            BackfillRequestStatus(
                id=r.id,
                token=r.token_address,
                from_block=r.from_block,
                to_block=r.to_block,
                state=r.state,
                blocks_done=r.blocks_done,
                blocks_total=r.blocks_total,
                events=r.events,
                error=r.error,
                created_at=r.created_at,
                finished_at=r.finished_at,
            )
        )
    return out


async def _recent_rate(session: AsyncSession, chain_id: int, indexed: int, window: int) -> tuple[int, float | None]:
    low = indexed - window  # exclusive
    events = (
        await session.execute(
            select(func.count())
            .select_from(ChainEvent)
            .where(ChainEvent.chain_id == chain_id, ChainEvent.block_number > low, ChainEvent.block_number <= indexed)
        )
    ).scalar_one()
    first, last = (
        await session.execute(
            select(func.min(Block.timestamp), func.max(Block.timestamp)).where(
                Block.chain_id == chain_id, Block.number > low, Block.number <= indexed
            )
        )
    ).one()
    if first is None or last is None:
        return int(events), None
    span = (last - first).total_seconds()
    return int(events), (round(events / span, 3) if span > 0 else None)


async def indexed_block_for(session: AsyncSession, chain_id: int, token: str) -> int | None:
    """The last block up to which a token's history is indexed without a gap: the end of its first fetched
    interval (the indexer records one per watched address with every write, merged, so a token followed from
    its start block ends where the cursor is, and a token only backfilled ends where the backfill stopped).
    With no interval recorded for it, the chain cursor's indexed block; None when neither exists."""
    fetched = (
        await session.execute(
            select(FetchedInterval.to_block)
            .where(FetchedInterval.chain_id == chain_id, FetchedInterval.address == token)
            .order_by(FetchedInterval.from_block)
            .limit(1)
        )
    ).scalar_one_or_none()
    if fetched is not None:
        return int(fetched)
    indexed = (
        await session.execute(select(IndexerCursor.indexed_block).where(IndexerCursor.chain_id == chain_id))
    ).scalar_one_or_none()
    return int(indexed) if indexed is not None and indexed >= 0 else None


def state_of(stopped_reason: str | None, error_count: int, indexed_block: int | None) -> str:
    """``stopped`` | ``failing`` | ``ok`` | ``not indexed`` (no cursor yet)."""
    if stopped_reason:
        return "stopped"
    if error_count >= FAILING_AFTER:
        return "failing"
    return "ok" if indexed_block is not None else "not indexed"
