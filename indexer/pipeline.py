"""fetch -> decode -> write over one block range, with the next batch fetched while one is written.

A transient failure of the fetch stage (an RPC fault that outlasted the client's retries and failover,
a reorg racing the reads) does not end the range: the fetch resumes after the last batch it produced,
after a backoff with jitter, until ``retry_for_s`` seconds pass without progress. So a backfill through
a provider that fails 20% of its requests finishes instead of stopping with "RPC unreachable".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import asyncpg

from chains.errors import AllEndpointsFailed, LogRangeTooLarge, RetryableRpcError
from chains.log_range import AdaptiveLogRange
from chains.rpc import RpcClient
from indexer import metrics
from indexer.backoff import Backoff, sleep_or_stop
from indexer.decode import DecodedBatch, decode_range
from indexer.errors import InconsistentFetch
from indexer.fetch import fetch_ranges
from indexer.write import WriteResult, write_batch

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
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)  # bounded: one batch waits while one is written
    addresses = sorted(address_starts)

    async def produce() -> None:
        pos, parent = lo, None  # next block to fetch, hash of the block before it (once known)
        retry = Backoff(retry_base_s, max(retry_base_s, retry_cap_s))
        while pos <= hi and not (stop is not None and stop.is_set()):
            try:
                async for fetched in fetch_ranges(
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
                ):
                    await queue.put(decode_range(fetched))
                    pos, parent = fetched.to_block + 1, fetched.end_hash
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
            break
        await queue.put(_END)

    producer = asyncio.create_task(produce())
    last = lo - 1
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                producer.result()  # raises the fetch error
                item = await queue.get()  # producer finished cleanly: the end marker is queued
            else:
                item = getter.result()
            if item is _END:
                break
            assert isinstance(item, DecodedBatch)
            started = time.perf_counter()
            result = await write_batch(conn, item, address_starts=address_starts, move_cursor=move_cursor)
            last = item.to_block
            c = str(chain_id)
            metrics.BATCHES_WRITTEN.labels(c).inc()
            for event, n in result.by_event.items():
                metrics.EVENTS_WRITTEN.labels(c, event).inc(n)
            if move_cursor:
                metrics.INDEXED_BLOCK.labels(c).set(item.to_block)
            if on_batch is not None:
                on_batch(BatchDone(item.from_block, item.to_block, result, time.perf_counter() - started))
            if stop is not None and stop.is_set():
                break
    finally:
        if not producer.done():
            producer.cancel()
            try:
                await producer
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the first error is already raised
                pass
    return last
