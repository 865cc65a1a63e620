"""Public entry points for the CLI and `rwa dev`: ``run_indexer`` and ``backfill``.

await run_indexer(settings)                       # all three chains, until stop is set
await run_indexer(settings, [137], stop=stop)     # one chain
result = await backfill(settings, 1, 18_000_000, None, token="0x...", progress=print)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:  # redis is imported where used: `rwa index backfill` never connects to it
    from redis.asyncio import Redis

    from chains.spec import ChainSpec

from chains.registry import all_chains, get_chain, rpc_urls_for
from chains.rpc import RpcClient
from core.settings import ConfigError, Settings
from indexer import backfill_requests, deferred_indexes, health, intervals, lock, metrics
from indexer.backoff import Backoff, retry_transient, sleep_or_stop
from indexer.chainstate import load_cursor, load_watched, read_heads
from indexer.config import IndexerConfig
from indexer.errors import IndexerBusy, NoRpcUrls, ReorgTooDeep, UnknownToken
from indexer.events import checksum
from indexer.fetch import make_ranger
from indexer.pipeline import BatchDone, index_range
from indexer.write import ensure_cursor, prepare_connection
from indexer.writer import ChainWriter

log = logging.getLogger(__name__)


def _freeze_startup_heap() -> None:
    """Move the objects alive when the first backfill starts (modules, classes, functions, settings) to the
    collector's permanent generation, once per process, so that full collections stop traversing them: a
    backfill allocates row tuples, JSON dicts and topic lists fast enough to trigger several. On the Ponder
    comparison's chain (200,000 Transfers) the process's CPU fell from 5.80 / 6.35 s to 5.14 / 5.01 s (alternating,
    load 4.8-5.4), peak RSS unchanged (118-121 MB). Cyclic garbage alive at that moment is never collected: a
    one-time start-up amount."""
    if gc.get_freeze_count() == 0:
        gc.freeze()


# Full collections during a backfill: one per FULL_GC_EVERY young (generation 1) collections instead of 10.
# With the start-up heap frozen, the collector's "long-lived objects grew by a quarter" guard always passes,
# so every 10th generation-1 collection was a full one, traversing the batches in flight: 8 of them (0.25 s
# of CPU) on the Ponder comparison's chain (200,000 Transfers), 1 at 100. What they free is small (httpx's
# request/response cycles, whose bodies are no longer kept on them: chains/rpc_endpoint.py): peak RSS
# 143 MB at 10, 148 MB with no full collection at all, in-process.
FULL_GC_EVERY = 100


@contextmanager
def _fewer_full_collections() -> Iterator[None]:
    g0, g1, g2 = gc.get_threshold()
    gc.set_threshold(g0, g1, max(g2, FULL_GC_EVERY))
    try:
        yield
    finally:
        if gc.get_threshold() == (g0, g1, max(g2, FULL_GC_EVERY)):  # not changed by someone else meanwhile
            gc.set_threshold(g0, g1, g2)


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    chain_id: int
    blocks_done: int
    blocks_total: int
    events: int  # raw events newly written so far
    elapsed_s: float
    current_block: int


@dataclass(frozen=True, slots=True)
class BackfillResult:
    chain_id: int
    from_block: int
    to_block: int
    blocks: int  # blocks scanned (ranges already fetched are skipped)
    events: int  # raw events newly written (0 when re-running a range)
    transfers: int
    elapsed_s: float
    stopped: bool  # stop was set before the end; a rerun resumes

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s else 0.0


def _database_url(settings: Settings) -> str:
    if not settings.database_url:
        raise ConfigError("DATABASE_URL must be set for the indexer (or start it through `rwa dev`)")
    return settings.database_url


def make_client(settings: Settings, chain_id: int, config: IndexerConfig) -> RpcClient:
    urls = settings.rpc_urls(chain_id) or rpc_urls_for(chain_id)
    if not urls:
        raise NoRpcUrls(chain_id)
    # verify_chain: a URL serving another chain is dropped from the rotation (logged), the others go on
    return RpcClient(urls, chain_id=chain_id, timeout=config.rpc_timeout_s, verify_chain=True)


async def _run_chain(
    settings: Settings, chain_id: int, config: IndexerConfig, stop: asyncio.Event, redis: Redis | None
) -> None:
    """Wait for the chain's writer lock, then follow; reconnect and re-elect after a lost connection."""
    spec = get_chain(chain_id)
    db_url = _database_url(settings)
    c = str(chain_id)
    reconnect = Backoff(config.error_backoff_s, max(config.error_backoff_s, config.error_backoff_max_s))
    async with make_client(settings, chain_id, config) as client:
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await lock.connect(db_url, chain_id)
                if not await lock.wait_for_lock(conn, chain_id, stop, config.lock_retry_s):
                    return
                reconnect.reset()
                await deferred_indexes.restore(conn)  # left missing by a backfill that did not finish
                metrics.IS_LEADER.labels(c).set(1)
                log.info("chain %s: writer lock acquired; indexing", chain_id)
                follower = ChainWriter(spec, client, conn, config, redis=redis, redis_prefix=settings.redis_prefix)
                await follower.run(stop)
            except ReorgTooDeep as exc:
                if conn is not None:  # durable, for `rwa index status` and indexerStatus
                    await health.record_stop(conn, chain_id, exc)
                raise
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                delay = reconnect.next()  # a database that stays down is retried less and less often
                log.warning("chain %s: database connection lost (%s); re-electing in %.1fs", chain_id, exc, delay)
                await sleep_or_stop(stop, delay)
            finally:
                metrics.IS_LEADER.labels(c).set(0)
                if conn is not None and not conn.is_closed():
                    await conn.close()


async def run_indexer(
    settings: Settings,
    chain_ids: list[int] | None = None,
    *,
    stop: asyncio.Event | None = None,
    config: IndexerConfig | None = None,
) -> None:
    """Index the given chains (default: all) concurrently until ``stop`` is set.

    A chain that hits ReorgTooDeep stops alone; the others go on. When every chain has ended,
    the first ReorgTooDeep is raised (so a CLI exits non-zero).
    """
    config = config or IndexerConfig.from_env()
    stop = stop or asyncio.Event()
    ids = chain_ids or [s.chain_id for s in all_chains()]
    _database_url(settings)
    for cid in ids:
        get_chain(cid)  # UnknownChain early
        if not (settings.rpc_urls(cid) or rpc_urls_for(cid)):
            raise NoRpcUrls(cid)
    from core.redis import create_redis

    redis = create_redis(settings.redis_url) if settings.redis_url else None
    tasks = [asyncio.create_task(_run_chain(settings, cid, config, stop, redis), name=f"chain-{cid}") for cid in ids]
    try:
        errors: list[BaseException] = []
        for fut in asyncio.as_completed(tasks):
            try:
                await fut
            except ReorgTooDeep as exc:  # that chain stops; the others go on
                log.error("%s", exc)
                errors.append(exc)
        if errors:
            raise errors[0]
    finally:
        for task in tasks:  # an unexpected error (or cancellation) must not leave chains running
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if redis is not None:
            await redis.aclose()


async def backfill(
    settings: Settings,
    chain_id: int,
    from_block: int,
    to_block: int | None,
    token: str | None = None,
    progress: Callable[[ProgressUpdate], None] | None = None,
    stop: asyncio.Event | None = None,
    *,
    config: IndexerConfig | None = None,
) -> BackfillResult:
    """Index [from_block, to_block] (default: the finalized head) for every watched address of the
    chain, or for one token (and its identity registry). Idempotent; skips what is already fetched;
    refuses (IndexerBusy) while another process holds the chain's writer lock."""
    config = config or IndexerConfig.from_env()
    spec = get_chain(chain_id)
    _freeze_startup_heap()
    if from_block < 0 or (to_block is not None and from_block > to_block):
        raise ValueError(f"bad block range: from {from_block} to {to_block}")
    with _fewer_full_collections():
        return await _backfill(settings, spec, chain_id, from_block, to_block, token, progress, stop, config)


async def _backfill(
    settings: Settings,
    spec: ChainSpec,
    chain_id: int,
    from_block: int,
    to_block: int | None,
    token: str | None,
    progress: Callable[[ProgressUpdate], None] | None,
    stop: asyncio.Event | None,
    config: IndexerConfig,
) -> BackfillResult:
    started = time.perf_counter()
    async with make_client(settings, chain_id, config) as client:
        conn = await lock.connect(_database_url(settings), chain_id, role="backfill")
        deferred = False
        try:
            if not await lock.try_lock(conn, chain_id):
                raise IndexerBusy(chain_id)
            await deferred_indexes.restore(conn)  # left missing by a backfill that did not finish
            deferred = await deferred_indexes.defer(conn)  # a first history: secondary indexes built after it
            await prepare_connection(conn)
            watched = await load_watched(conn, chain_id)
            if token is not None:
                addr = checksum(token)
                row = await conn.fetchrow(
                    "SELECT start_block, identity_registry FROM tokens WHERE chain_id = $1 AND lower(address) = lower($2)",
                    chain_id,
                    addr,
                )
                if row is None:
                    raise UnknownToken(chain_id, addr)
                registry = checksum(row["identity_registry"]) if row["identity_registry"] else None
                targets = {a: s for a, s in watched.items() if a in (addr, registry)}
            else:
                targets = dict(watched)
            heads = await retry_transient(
                lambda: read_heads(client, spec, config.depth_for(spec), config.use_finality_tags),
                what=f"chain {chain_id}: reading the heads",
                stop=stop,
            )
            end = heads.finalized if to_block is None else to_block
            if from_block > end:
                raise ValueError(f"bad block range: from {from_block} is above {end}")
            if watched:
                await ensure_cursor(conn, chain_id, min(watched.values()) - 1)
            covered = await intervals.load(conn, chain_id)
            spans = intervals.merge(
                [
                    g
                    for a, s in targets.items()
                    for g in intervals.gaps(covered.get(a, []), max(from_block, s), end)
                    if max(from_block, s) <= end
                ]
            )
            total = sum(hi - lo + 1 for lo, hi in spans)
            done = events = transfers = 0
            ranger = make_ranger(spec, config.initial_span)
            stopped = False
            for lo, hi in spans:
                cursor = await load_cursor(conn, chain_id)
                move = token is None and cursor is not None and cursor.indexed_block == lo - 1 and targets == watched

                def on_batch(b: BatchDone) -> None:
                    nonlocal done, events, transfers
                    done += b.to_block - b.from_block + 1
                    events += b.result.events
                    transfers += b.result.transfers
                    if progress is not None:
                        progress(
                            ProgressUpdate(chain_id, done, total, events, time.perf_counter() - started, b.to_block)
                        )

                last = await index_range(
                    conn,
                    client,
                    chain_id,
                    targets,
                    lo,
                    hi,
                    finalized=heads.finalized,
                    ranger=ranger,
                    move_cursor=move,
                    max_events=config.batch_events,
                    logs_per_call=config.logs_per_call,
                    rpc_timeout=config.rpc_timeout_s,
                    stop=stop,
                    on_batch=on_batch,
                )
                if last < hi:
                    stopped = True
                    break
        finally:
            if deferred:
                try:
                    await deferred_indexes.restore(
                        conn,
                        deferred_here=True,
                        connect=lambda: lock.connect(_database_url(settings), chain_id, role="backfill-index"),
                    )
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                    log.error(
                        "chain %s: deferred indexes not rebuilt (the next start rebuilds them): %s", chain_id, exc
                    )
            await conn.close()
    return BackfillResult(chain_id, from_block, end, done, events, transfers, time.perf_counter() - started, stopped)


def _request_update(req: backfill_requests.BackfillRequest, elapsed_s: float) -> ProgressUpdate:
    return ProgressUpdate(
        req.chain_id,
        req.blocks_done,
        req.blocks_total or 0,
        req.events,
        elapsed_s,
        req.to_block if req.to_block is not None else req.from_block,
    )


async def request_backfill(
    settings: Settings,
    chain_id: int,
    from_block: int,
    to_block: int | None,
    token: str | None = None,
    *,
    wait: bool = True,
    progress: Callable[[ProgressUpdate], None] | None = None,
    stop: asyncio.Event | None = None,
    config: IndexerConfig | None = None,
    poll_s: float = 0.25,
) -> backfill_requests.BackfillRequest:
    """File a backfill for the process that holds the chain's writer lock (a running `rwa index run`), which
    executes it between follow steps (indexer/backfill_requests.py). With ``wait``, report its progress
    until it finishes; if the lock is free meanwhile (no writer, or its chain stopped), take it and execute
    the request here. ``stop`` cancels the request (what was written is kept)."""
    config = config or IndexerConfig.from_env()
    get_chain(chain_id)
    if from_block < 0 or (to_block is not None and from_block > to_block):
        raise ValueError(f"bad block range: from {from_block} to {to_block}")
    db_url = _database_url(settings)
    conn = await lock.connect(db_url, chain_id, role="backfill-request")
    try:
        if token is not None:
            token = checksum(token)
            if not await conn.fetchval(
                "SELECT 1 FROM tokens WHERE chain_id = $1 AND lower(address) = lower($2)", chain_id, token
            ):
                raise UnknownToken(chain_id, token)
        req = await backfill_requests.submit(conn, chain_id, from_block, to_block, token)
        log.info("chain %s: backfill request %s filed for the running writer", chain_id, req.id)
        if not wait:
            return req
        return await _follow_request(settings, conn, req.id, chain_id, config, progress, stop, poll_s)
    finally:
        await conn.close()


async def _follow_request(
    settings: Settings,
    conn: asyncpg.Connection,
    request_id: int,
    chain_id: int,
    config: IndexerConfig,
    progress: Callable[[ProgressUpdate], None] | None,
    stop: asyncio.Event | None,
    poll_s: float,
) -> backfill_requests.BackfillRequest:
    started = time.perf_counter()
    next_lock_try = 0.0
    while True:
        req = await backfill_requests.get(conn, request_id)
        assert req is not None
        if progress is not None and req.blocks_total is not None:
            progress(_request_update(req, time.perf_counter() - started))
        if req.finished:
            return req
        if stop is not None and stop.is_set():
            await backfill_requests.cancel(conn, request_id)
            canceled = await backfill_requests.get(conn, request_id)
            assert canceled is not None  # requests are never deleted
            return canceled
        if time.perf_counter() >= next_lock_try:
            next_lock_try = time.perf_counter() + config.lock_retry_s
            done = await _execute_if_no_writer(settings, request_id, chain_id, config, progress, stop, started)
            if done is not None:
                return done
        await _sleep_or_stop(stop, poll_s)


async def _execute_if_no_writer(
    settings: Settings,
    request_id: int,
    chain_id: int,
    config: IndexerConfig,
    progress: Callable[[ProgressUpdate], None] | None,
    stop: asyncio.Event | None,
    started: float,
) -> backfill_requests.BackfillRequest | None:
    """Take the writer lock if free and run the request to its end here; None if another process holds it."""
    spec = get_chain(chain_id)
    conn = await lock.connect(_database_url(settings), chain_id, role="backfill")
    try:
        if not await lock.try_lock(conn, chain_id):
            return None
        log.info("chain %s: no writer holds the lock; executing backfill request %s here", chain_id, request_id)
        await prepare_connection(conn)
        async with make_client(settings, chain_id, config) as client:
            heads = await retry_transient(
                lambda: read_heads(client, spec, config.depth_for(spec), config.use_finality_tags),
                what=f"chain {chain_id}: reading the heads",
                stop=stop,
            )
            watched = await load_watched(conn, chain_id)
            if watched:
                await ensure_cursor(conn, chain_id, min(watched.values()) - 1)

            def report(req: backfill_requests.BackfillRequest) -> None:
                if progress is not None and req.blocks_total is not None:
                    progress(_request_update(req, time.perf_counter() - started))

            await backfill_requests.execute(
                conn,
                client,
                chain_id,
                config,
                make_ranger(spec, config.initial_span),
                finalized=heads.finalized,
                ceiling=heads.finalized,
                budget_s=None,
                stop=stop,
                on_progress=report,
                only=request_id,
            )
        if stop is not None and stop.is_set():
            await backfill_requests.cancel(conn, request_id, writer=True)
        return await backfill_requests.get(conn, request_id)
    finally:
        await conn.close()


async def _sleep_or_stop(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
