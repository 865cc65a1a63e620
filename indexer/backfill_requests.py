"""Backfill requests: `rwa index backfill` next to a running `rwa index run` (table indexer_backfill_requests).

Only the process holding a chain's writer lock writes that chain (indexer/lock.py), so a backfill cannot run
beside the follower. Instead the CLI files a request; the writer executes it in slices of about
``SLICE_S`` seconds between two follow steps (the head keeps being followed), recording progress on the
row after every batch. Ranges are coordinated through the fetched intervals: a slice indexes only the
gaps of the request's addresses, so a slice, a crash, the follower's own catch-up or another request
never index a block twice, and a restarted writer resumes a RUNNING request where it stopped.

    PENDING --writer picks it up--> RUNNING --gaps all fetched--> DONE
       |                               |--error (unknown token, bad range)--> FAILED
       '--cancel_requested (Ctrl-C)----'--> CANCELLED

Whoever holds the lock executes: when no writer runs (or the chain's writer stopped), the waiting CLI
takes the lock and executes its own request (``execute``), so a request never waits for nobody.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from chains.log_range import AdaptiveLogRange
from chains.rpc import RpcClient
from indexer import intervals
from indexer.chainstate import load_watched
from indexer.config import IndexerConfig
from indexer.events import checksum
from indexer.pipeline import BatchDone, index_range

PENDING, RUNNING, DONE, FAILED, CANCELLED = "PENDING", "RUNNING", "DONE", "FAILED", "CANCELLED"
TERMINAL = (DONE, FAILED, CANCELLED)
SLICE_S = 2.0  # longest a writer spends on requests before following the head again
PROGRESS_EVERY_S = 1.0  # progress is written to the request row about this often

_COLUMNS = (
    "id, chain_id, token_address, from_block, to_block, state, cancel_requested, blocks_total, "
    "blocks_done, events, error, created_at, started_at, finished_at"
)


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    id: int
    chain_id: int
    token_address: str | None
    from_block: int
    to_block: int | None
    state: str
    cancel_requested: bool
    blocks_total: int | None
    blocks_done: int
    events: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


def _row(r: Mapping[str, Any] | None) -> BackfillRequest | None:
    return None if r is None else BackfillRequest(**dict(r))


async def submit(
    conn: asyncpg.Connection, chain_id: int, from_block: int, to_block: int | None, token: str | None
) -> BackfillRequest:
    r = await conn.fetchrow(
        f"INSERT INTO indexer_backfill_requests (chain_id, token_address, from_block, to_block) "
        f"VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
        chain_id,
        token,
        from_block,
        to_block,
    )
    req = _row(r)
    assert req is not None
    return req


async def get(conn: asyncpg.Connection, request_id: int) -> BackfillRequest | None:
    return _row(await conn.fetchrow(f"SELECT {_COLUMNS} FROM indexer_backfill_requests WHERE id = $1", request_id))


async def cancel(conn: asyncpg.Connection, request_id: int, *, writer: bool = False) -> None:
    """Ask the executor to stop after its current batch; a PENDING request (or any, when the caller is the
    writer holding the lock) is cancelled at once."""
    now = "true" if writer else "state = 'PENDING'"
    await conn.execute(
        "UPDATE indexer_backfill_requests SET cancel_requested = true, updated_at = now(), "
        f"state = CASE WHEN {now} THEN 'CANCELLED' ELSE state END, "
        f"finished_at = CASE WHEN {now} THEN now() ELSE finished_at END "
        "WHERE id = $1 AND state NOT IN ('DONE', 'FAILED', 'CANCELLED')",
        request_id,
    )


async def _finish(conn: asyncpg.Connection, request_id: int, state: str, error: str | None = None) -> None:
    await conn.execute(
        "UPDATE indexer_backfill_requests SET state = $2, error = $3, finished_at = now(), updated_at = now() "
        "WHERE id = $1",
        request_id,
        state,
        error,
    )


async def _targets(conn: asyncpg.Connection, req: BackfillRequest) -> dict[str, int] | str:
    """address -> start block of what the request covers, or why it cannot run."""
    watched = await load_watched(conn, req.chain_id)
    if req.token_address is None:
        return watched
    addr = checksum(req.token_address)
    row = await conn.fetchrow(
        "SELECT identity_registry FROM tokens WHERE chain_id = $1 AND lower(address) = lower($2)", req.chain_id, addr
    )
    if row is None:
        return f"token {addr} is not registered on chain {req.chain_id}"
    registry = checksum(row["identity_registry"]) if row["identity_registry"] else None
    return {a: s for a, s in watched.items() if a in (addr, registry)}


def _spans(
    targets: Mapping[str, int], covered: Mapping[str, list[intervals.Interval]], lo: int, hi: int
) -> list[intervals.Interval]:
    return intervals.merge(
        [g for a, s in targets.items() if max(lo, s) <= hi for g in intervals.gaps(covered.get(a, []), max(lo, s), hi)]
    )


async def execute(
    conn: asyncpg.Connection,
    client: RpcClient,
    chain_id: int,
    config: IndexerConfig,
    ranger: AdaptiveLogRange,
    *,
    finalized: int,
    ceiling: int,
    budget_s: float | None = SLICE_S,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[BackfillRequest], None] | None = None,
    only: int | None = None,
) -> bool:
    """Work on the chain's oldest unfinished request (or request ``only``) for up to ``budget_s`` seconds
    (None: to the end). The caller holds the chain's writer lock. ``ceiling`` bounds an open-ended request
    (the finalized head; blocks above the cursor are the follower's). True if a request was worked on."""
    where = "id = $2" if only is not None else "state IN ('PENDING', 'RUNNING')"
    r = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM indexer_backfill_requests WHERE chain_id = $1 AND {where} ORDER BY id LIMIT 1",
        chain_id,
        *(() if only is None else (only,)),
    )
    req = _row(r)
    if req is None or req.finished:
        return False
    if req.cancel_requested:
        await _finish(conn, req.id, CANCELLED)
        return True
    targets = await _targets(conn, req)
    if isinstance(targets, str):
        await _finish(conn, req.id, FAILED, targets)
        return True
    end = req.to_block if req.to_block is not None else ceiling
    covered = await intervals.load(conn, chain_id)
    spans = _spans(targets, covered, req.from_block, end)
    if req.state == PENDING:  # the work is sized once, when it starts; later slices count down from it
        total = sum(b - a + 1 for a, b in spans)
        await conn.execute(
            "UPDATE indexer_backfill_requests SET state = 'RUNNING', started_at = now(), to_block = $2, "
            "blocks_total = $3, updated_at = now() WHERE id = $1",
            req.id,
            end,
            total,
        )
        req = await get(conn, req.id)
        assert req is not None

    started = time.monotonic()
    state = RUNNING
    while state == RUNNING:
        if not spans:
            state = DONE
            break
        lo, hi = spans[0]
        round_started = time.monotonic()
        round_stop = asyncio.Event()
        blocks = events = 0

        def on_batch(b: BatchDone) -> None:
            nonlocal blocks, events
            blocks += b.to_block - b.from_block + 1
            events += b.result.events
            now = time.monotonic()
            if (
                now - round_started >= PROGRESS_EVERY_S  # noqa: B023 (on_batch runs only within this round)
                or (budget_s is not None and now - started >= budget_s)
                or (stop is not None and stop.is_set())
            ):
                round_stop.set()  # noqa: B023 (this round's event) index_range stops after this batch: record progress, look for a cancel

        try:
            await index_range(
                conn,
                client,
                chain_id,
                targets,
                lo,
                hi,
                finalized=finalized,
                ranger=ranger,
                move_cursor=False,
                max_events=config.batch_events,
                commit_events=1,  # a transaction per batch: a slice can stop after any batch
                logs_per_call=config.logs_per_call,
                rpc_timeout=config.rpc_timeout_s,
                stop=round_stop,
                on_batch=on_batch,
            )
        finally:  # what was committed is counted even if the next batch failed
            cancelled = await conn.fetchval(
                "UPDATE indexer_backfill_requests SET blocks_done = blocks_done + $2, events = events + $3, "
                "updated_at = now() WHERE id = $1 RETURNING cancel_requested",
                req.id,
                blocks,
                events,
            )
        if cancelled:
            state = CANCELLED
        elif (budget_s is not None and time.monotonic() - started >= budget_s) or (stop is not None and stop.is_set()):
            break
        else:
            spans = _spans(targets, await intervals.load(conn, chain_id), req.from_block, end)
        if on_progress is not None and state == RUNNING:
            now_req = await get(conn, req.id)
            assert now_req is not None
            on_progress(now_req)
    if state != RUNNING:
        await _finish(conn, req.id, state)
        if on_progress is not None:
            final = await get(conn, req.id)
            assert final is not None
            on_progress(final)
    return True
