"""fetch -> decode -> write over one block range, three stages at once: while one batch is written, the next is
decoded and the one after it fetched (``fetched_ahead``).

A transient failure of the fetch stage (an RPC fault that outlasted the client's retries and failover,
a reorg racing the reads) does not end the range: the fetch resumes after the last batch it produced,
after a backoff with jitter, until ``retry_for_s`` seconds pass without progress. So a backfill through
a provider that fails 20% of its requests finishes instead of stopping with "RPC unreachable".

Up to COMMIT_BATCHES consecutive batches of a range share one transaction (a batch joins the open one if it
is fetched within GROUP_WAIT_S of the previous write): their rows are copied batch by batch (memory stays one batch), their
balance deltas are summed in memory and applied once before the commit, in the same transaction as the
rows and the cursor, so after a crash holdings still match the cursor. A realistic history touches
thousands of distinct holders per batch, and each holdings upsert writes a new row version and index
entries: once per group instead of once per batch (issue 16). At the head (one batch per poll) each
batch commits alone, as before: the range ends after it. ``on_batch`` and the metrics see a batch once it is committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg.transaction import Transaction

from chains.errors import AllEndpointsFailed, LogRangeTooLarge, RetryableRpcError
from chains.log_range import AdaptiveLogRange
from chains.rpc import RpcClient
from indexer import metrics
from indexer.backoff import Backoff, sleep_or_stop
from indexer.decode import DecodedBatch, decode_range
from indexer.errors import InconsistentFetch
from indexer.fetch import FetchedRange, fetch_ranges
from indexer.write import PendingBalances, WriteResult, write_batch

log = logging.getLogger(__name__)

# Failures the fetch stage retries: the next attempt (later, or on another URL) may succeed. A range error
# reaches here only for a span that cannot be split further (one block): some providers send it as a
# disguised rate limit, so it is retried too, within the same time budget, before it stops a backfill.
TRANSIENT_FETCH_ERRORS = (RetryableRpcError, AllEndpointsFailed, InconsistentFetch, LogRangeTooLarge)


@dataclass(frozen=True, slots=True)
class BatchDone:
    from_block: int
    to_block: int
    result: WriteResult
    seconds: float


_END = object()

# Batches that may share one transaction while the writer is behind (the next batch already fetched).
# Measured on the Ponder comparison's chain (200,000 Transfers, 5,010 holders, batches of 5,000; one run each,
# load 5-6.5): 1 (as before): 7.2 s CPU in the indexer + 9.0 s in its Postgres backend; 4: 6.1 + 6.2 s;
# 8: 5.0 + 5.0 s; 16: 5.3 + 5.0 s. Memory does not grow with it (a batch is freed once copied).
COMMIT_BATCHES = 8
# How long an open group waits for the range's next batch before it commits without it. The writer used to commit
# whenever it had caught up with the fetch (the next batch not yet decoded), which on the Ponder comparison's chain
# and the realistic shape, where fetch + decode are as slow as the write, was most of the time: one holdings upsert
# of every holder touched per batch or two instead of one per COMMIT_BATCHES. Waiting costs nothing (the writer
# has nothing else to do); the bound keeps a stalled fetch (an RPC backoff) from holding written rows uncommitted.
# At the head the range ends after its last batch, and the end marker commits at once.
GROUP_WAIT_S = 2.0


async def fetched_ahead(batches: AsyncGenerator[FetchedRange, None]) -> AsyncGenerator[FetchedRange, None]:
    """``batches``, the next one fetched while the caller decodes this one: the fetch mostly waits for the node
    (and its countries' eth_calls), the decode is CPU, so they overlap. A fetch error comes after the batches
    fetched before it, in order; closing this generator cancels the fetch and closes ``batches``."""
    ahead: asyncio.Queue[tuple[FetchedRange | None, BaseException | None]] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        try:
            async for batch in batches:
                await ahead.put((batch, None))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, in order
            await ahead.put((None, exc))
            return
        await ahead.put((None, None))

    task = asyncio.create_task(pump())
    try:
        while True:
            batch, exc = await ahead.get()
            if exc is not None:
                raise exc
            if batch is None:
                return
            yield batch
            del batch
    finally:
        task.cancel()
        await asyncio.wait([task])  # without its result; a cancellation of this task still propagates
        await batches.aclose()


async def index_range(
    conn: asyncpg.Connection,
    client: RpcClient,
    chain_id: int,
    address_starts: Mapping[str, int],
    lo: int,
    hi: int,
    *,
    finalized: int,
    ranger: AdaptiveLogRange,
    move_cursor: bool,
    max_events: int = 20_000,
    commit_events: int | None = None,
    logs_per_call: int = 10_000,
    rpc_timeout: float | None = None,
    stop: asyncio.Event | None = None,
    on_batch: Callable[[BatchDone], None] | None = None,
    retry_base_s: float = 0.25,
    retry_cap_s: float = 10.0,
    retry_for_s: float = 300.0,
) -> int:
    """Index [lo, hi] for ``address_starts``; returns the last block written (lo - 1 if none).

    Batches are written in order. The fetch stage retries TRANSIENT_FETCH_ERRORS (backoff from
    ``retry_base_s`` to ``retry_cap_s``) until they last ``retry_for_s``; any other failure in either
    stage cancels the other and propagates. ``stop`` is honoured between batches and during a backoff
    (what is committed stays committed).
    """
    if commit_events is None:
        commit_events = COMMIT_BATCHES * max_events
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)  # bounded: one batch waits while one is written
    addresses = sorted(address_starts)

    async def produce() -> None:
        pos, parent = lo, None  # next block to fetch, hash of the block before it (once known)
        retry = Backoff(retry_base_s, max(retry_base_s, retry_cap_s))
        while pos <= hi and not (stop is not None and stop.is_set()):
            fetching = fetched_ahead(
                fetch_ranges(
                    client,
                    chain_id,
                    addresses,
                    pos,
                    hi,
                    finalized=finalized,
                    ranger=ranger,
                    max_events=max_events,
                    logs_per_call=logs_per_call,
                    timeout=rpc_timeout,
                    parent_hash=parent,
                )
            )
            try:
                async for fetched in fetching:
                    decoded = decode_range(fetched)
                    pos, parent = fetched.to_block + 1, fetched.end_hash
                    del fetched  # its logs are decoded: freed while the next batch is fetched
                    await queue.put(decoded)
                    del decoded
                    retry.reset()
                    if stop is not None and stop.is_set():
                        break
            except TRANSIENT_FETCH_ERRORS as exc:
                if retry.failing_for >= retry_for_s:
                    raise
                delay = retry.next()
                metrics.ITERATION_ERRORS.labels(str(chain_id), type(exc).__name__).inc()
                log.warning(
                    "chain %s: fetch from block %s failed (%s: %s); retrying in %.1fs",
                    chain_id,
                    pos,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                if await sleep_or_stop(stop, delay):
                    break
                continue
            finally:
                await fetching.aclose()
            break
        await queue.put(_END)

    producer = asyncio.create_task(produce())
    last = lo - 1
    group: Transaction | None = None  # open while consecutive batches share one transaction (see the docstring)
    pending = PendingBalances()
    written: list[BatchDone] = []  # the open group's batches, reported once it commits
    group_events = 0

    async def commit() -> None:
        nonlocal group, group_events, last
        assert group is not None
        await pending.apply(conn, chain_id)
        await group.commit()
        group, group_events = None, 0
        c = str(chain_id)
        for done in written:
            last = done.to_block
            metrics.BATCHES_WRITTEN.labels(c).inc()
            for event, n in done.result.by_event.items():
                metrics.EVENTS_WRITTEN.labels(c, event).inc(n)
            if on_batch is not None:
                on_batch(done)
        if move_cursor:
            metrics.INDEXED_BLOCK.labels(c).set(last)
        written.clear()

    getter: asyncio.Future[object] | None = None  # the pending queue.get(), kept across a group's wait
    try:
        while True:
            if getter is None:
                getter = asyncio.ensure_future(queue.get())
            waiting: set[asyncio.Future[Any]] = {getter, producer}
            done_, _ = await asyncio.wait(
                waiting,
                timeout=None if group is None else GROUP_WAIT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done_:  # the open group waited GROUP_WAIT_S for the next batch: commit what it has
                await commit()
                continue
            if getter not in done_:
                getter.cancel()
                getter = None
                producer.result()  # raises the fetch error
                item = await queue.get()  # producer finished cleanly: the end marker is queued
            else:
                item = getter.result()
                getter = None
            if item is _END:
                break
            assert isinstance(item, DecodedBatch)
            if group is None:
                group = conn.transaction()
                await group.start()
            started = time.perf_counter()
            result = await write_batch(
                conn, item, address_starts=address_starts, move_cursor=move_cursor, pending=pending
            )
            written.append(BatchDone(item.from_block, item.to_block, result, time.perf_counter() - started))
            group_events += item.n_events
            del item  # its rows are in Postgres: free them while the next batch is written
            if (
                not (stop is not None and stop.is_set())
                and group_events < commit_events
                and len(written) < COMMIT_BATCHES
            ):
                continue  # more of the range is coming: the next batch joins this transaction
            await commit()
            if stop is not None and stop.is_set():
                break
        if group is not None:  # the end marker was queued behind the last batch
            await commit()
    finally:
        if getter is not None:
            getter.cancel()
        if group is not None:  # a batch (or the commit) failed: nothing of the group is committed
            try:
                await group.rollback()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                pass  # the connection is gone: the server rolls back; the first error is what matters
        if not producer.done():
            producer.cancel()
            try:
                await producer
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the first error is already raised
                pass
    return last
