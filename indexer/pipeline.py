"""fetch -> decode -> write over one block range, with the next batch fetched while one is written."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import asyncpg

from chains.log_range import AdaptiveLogRange
from chains.rpc import RpcClient
from indexer import metrics
from indexer.decode import DecodedBatch, decode_range
from indexer.fetch import fetch_ranges
from indexer.write import WriteResult, write_batch


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
) -> int:
    """Index [lo, hi] for ``address_starts``; returns the last block written (lo - 1 if none).

    Batches are written in order; a failure in either stage cancels the other and propagates.
    ``stop`` is honoured between batches (what is committed stays committed).
    """
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)  # bounded: one batch waits while one is written
    addresses = sorted(address_starts)

    async def produce() -> None:
        async for fetched in fetch_ranges(
            client, chain_id, addresses, lo, hi, finalized=finalized, ranger=ranger,
            max_events=max_events, logs_per_call=logs_per_call, timeout=rpc_timeout,
        ):
            await queue.put(decode_range(fetched))
            if stop is not None and stop.is_set():
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
