"""One chain's indexing loop (run while this process holds the chain's writer lock).

Each step: read the node's heads; check the block under the cursor still has the stored hash
(else walk back and roll back); now and then (and after any doubt) compare every stored block of the
reorg window with the node and heal from the lowest one that differs; let addresses that lag the
cursor (tokens added later) catch up on their own; then extend the cursor towards the head for every
caught-up address.

Only a proven hash mismatch is a reorg: a null block (a lagging or load-balanced node) or a node whose
head is below the cursor is transient, retried after a backoff. Every failed step, reorg races
included, waits through an exponential backoff with jitter and a cap before the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypedDict

import asyncpg

if TYPE_CHECKING:  # redis is imported where used: `rwa index backfill` never connects to it
    from redis.asyncio import Redis

from chains.errors import ChainIdMismatch, RpcError
from chains.rpc import RpcClient
from chains.spec import ChainSpec
from indexer import intervals, metrics
from indexer.backoff import Backoff, sleep_or_stop
from indexer.chainstate import Cursor, Heads, load_cursor, load_watched, read_heads, save_heads
from indexer.config import IndexerConfig
from indexer.errors import InconsistentFetch, ReorgDetected, ReorgTooDeep
from indexer.fetch import make_ranger
from indexer.pipeline import index_range
from indexer.reorg import find_common_ancestor, find_divergence, publish_reorg, rollback
from indexer.write import ensure_cursor, prepare_connection

log = logging.getLogger(__name__)
PRUNE_EVERY = 256  # blocks of finality progress between two prunes
FETCH_RETRY_FOR_S = 60.0  # a fetch failing this long ends the step (the next one re-reads the heads)


class RetryPacing(TypedDict):
    """index_range's retry keywords."""

    retry_base_s: float
    retry_cap_s: float
    retry_for_s: float


class ChainFollower:
    def __init__(
        self,
        spec: ChainSpec,
        client: RpcClient,
        conn: asyncpg.Connection,
        config: IndexerConfig,
        *,
        redis: Redis | None = None,
        redis_prefix: str = "rwa:",
    ) -> None:
        self.spec = spec
        self.chain_id = spec.chain_id
        self.client = client
        self.conn = conn
        self.config = config
        self.redis = redis
        self.redis_prefix = redis_prefix
        self.depth = config.depth_for(spec)
        self.ranger = make_ranger(spec, config.initial_span)
        self._pruned_to = -1  # blocks at or below this number were pruned (first pass scans all)
        self._next_self_check = 0.0  # monotonic time of the next self-check (the first step runs one)
        self.backoff = Backoff(config.error_backoff_s, max(config.error_backoff_s, config.error_backoff_max_s))

    async def run(self, stop: asyncio.Event) -> None:
        """Follow until ``stop``. ReorgTooDeep, ChainIdMismatch (no URL serves this chain) and lost-connection
        errors propagate; anything else is retried after a backoff (reorg races too, then self-checked)."""
        await prepare_connection(self.conn)
        poll = self.config.poll_for(self.spec)
        c = str(self.chain_id)
        while not stop.is_set():
            try:
                busy = await self.step(stop)
            except ReorgTooDeep:
                metrics.REORGS_TOO_DEEP.labels(c).inc()
                raise
            except ChainIdMismatch:
                raise
            except (ReorgDetected, InconsistentFetch) as exc:
                # The chain moved under a batch: re-check the stored window against the node first.
                self._next_self_check = 0.0
                delay = self.backoff.next()
                metrics.ITERATION_ERRORS.labels(c, type(exc).__name__).inc()
                log.info("chain %s: %s; re-checking in %.2fs", self.chain_id, exc, delay)
                await sleep_or_stop(stop, delay)
                continue
            except (RpcError, asyncpg.PostgresError, OSError, ValueError, KeyError, TypeError) as exc:
                # RPC faults, malformed replies, transient DB errors: back off, retry the step.
                if self.conn.is_closed():
                    raise
                delay = self.backoff.next()
                metrics.ITERATION_ERRORS.labels(c, type(exc).__name__).inc()
                log.warning(
                    "chain %s: step failed (%s: %s); retrying in %.2fs", self.chain_id, type(exc).__name__, exc, delay
                )
                await sleep_or_stop(stop, delay)
                continue
            self.backoff.reset()
            if not busy:
                await sleep_or_stop(stop, poll)

    async def step(self, stop: asyncio.Event | None = None) -> bool:
        """One iteration; True if it wrote or rolled back something (so the next runs at once)."""
        heads = await read_heads(self.client, self.spec, self.depth, self.config.use_finality_tags)
        watched = await load_watched(self.conn, self.chain_id)
        cursor = await load_cursor(self.conn, self.chain_id)
        if cursor is None:
            if not watched:
                return False
            await ensure_cursor(self.conn, self.chain_id, min(watched.values()) - 1)
            cursor = await load_cursor(self.conn, self.chain_id)
            assert cursor is not None
        metrics.observe_heads(self.chain_id, heads.head, heads.safe, heads.finalized, cursor.indexed_block)

        if cursor.indexed_hash is not None and cursor.indexed_block >= 0:
            if cursor.indexed_block > heads.head:
                # The node is behind the cursor (a lagging provider, or a reorg to a shorter chain that will
                # grow back past it): nothing is proven either way, so wait.
                log.info(
                    "chain %s: node head %s is below the indexed block %s; waiting",
                    self.chain_id,
                    heads.head,
                    cursor.indexed_block,
                )
                return False
            node_block = await self.client.get_block(cursor.indexed_block, require=True)  # null: transient
            assert node_block is not None
            if node_block["hash"] != cursor.indexed_hash:
                await self.handle_reorg(cursor)
                return True
        if time.monotonic() >= self._next_self_check:
            healed = await self.self_check(cursor, heads)
            self._next_self_check = time.monotonic() + self.config.self_check_interval_s
            if healed:
                return True
        # Recorded only once the indexed chain is verified at the cursor: it is the floor below which a
        # later mismatch means a finalized block changed (ReorgTooDeep), so it must not move up on a
        # step that could not verify anything.
        await save_heads(self.conn, self.chain_id, heads)
        if not watched:
            return False
        busy = await self.catch_up(watched, cursor, heads, stop)
        cursor = await self.resume_from_intervals(watched, cursor, heads)
        if cursor.indexed_block < heads.head and not (stop is not None and stop.is_set()):
            addresses = {a: s for a, s in watched.items()}
            last = await index_range(
                self.conn,
                self.client,
                self.chain_id,
                addresses,
                cursor.indexed_block + 1,
                heads.head,
                finalized=heads.finalized,
                ranger=self.ranger,
                move_cursor=True,
                max_events=self.config.batch_events,
                logs_per_call=self.config.logs_per_call,
                rpc_timeout=self.config.rpc_timeout_s,
                stop=stop,
                **self._retry,
            )
            metrics.LAG_BLOCKS.labels(str(self.chain_id)).set(max(0, heads.head - last))
            busy = busy or last > cursor.indexed_block
        await self.prune_blocks(heads)
        return busy

    async def prune_blocks(self, heads: Heads) -> None:
        """Drop stored blocks without events once they are finalized and out of the reorg window;
        blocks with events stay (their timestamps and hashes are referenced)."""
        below = min(heads.finalized, heads.head - self.depth) - 1
        if below - self._pruned_to < PRUNE_EVERY:
            return
        await self.conn.execute(
            "DELETE FROM blocks b WHERE b.chain_id = $1 AND b.number > $2 AND b.number < $3 "
            "AND NOT EXISTS (SELECT 1 FROM chain_events e WHERE e.chain_id = b.chain_id AND e.block_number = b.number) "
            "AND b.number <> (SELECT indexed_block FROM indexer_cursors WHERE chain_id = $1)",
            self.chain_id,
            self._pruned_to,
            below,
        )
        self._pruned_to = below - 1

    async def catch_up(
        self, watched: Mapping[str, int], cursor: Cursor, heads: Heads, stop: asyncio.Event | None
    ) -> bool:
        """Backfill addresses whose history up to the cursor is incomplete (a token added while running)."""
        covered = await intervals.load(self.conn, self.chain_id)
        did = False
        for address, start in sorted(watched.items()):
            if start > cursor.indexed_block:
                continue
            for lo, hi in intervals.gaps(covered.get(address, []), start, cursor.indexed_block):
                log.info("chain %s: backfilling %s over [%s, %s]", self.chain_id, address, lo, hi)
                await index_range(
                    self.conn,
                    self.client,
                    self.chain_id,
                    {address: start},
                    lo,
                    hi,
                    finalized=heads.finalized,
                    ranger=self.ranger,
                    move_cursor=False,
                    max_events=self.config.batch_events,
                    logs_per_call=self.config.logs_per_call,
                    rpc_timeout=self.config.rpc_timeout_s,
                    stop=stop,
                    **self._retry,
                )
                did = True
                if stop is not None and stop.is_set():
                    return did
        return did

    async def resume_from_intervals(self, watched: Mapping[str, int], cursor: Cursor, heads: Heads) -> Cursor:
        """Move the cursor over blocks every watched address already has (a finished `backfill`)."""
        covered = await intervals.load(self.conn, self.chain_id)
        nxt = cursor.indexed_block + 1
        reach = heads.finalized
        for address, start in watched.items():
            if start > nxt:
                reach = min(reach, start - 1)
                continue
            ends = [hi for lo, hi in covered.get(address, []) if lo <= nxt <= hi]
            reach = min(reach, ends[0] if ends else cursor.indexed_block)
        if reach <= cursor.indexed_block:
            return cursor
        block_hash = await self.conn.fetchval(
            "SELECT hash FROM blocks WHERE chain_id = $1 AND number = $2", self.chain_id, reach
        )
        if block_hash is None:
            blk = await self.client.get_block(reach)
            if blk is None:
                return cursor
            block_hash = blk["hash"]
        await self.conn.execute(
            "UPDATE indexer_cursors SET indexed_block = $2, indexed_hash = $3, updated_at = now() "
            "WHERE chain_id = $1 AND indexed_block = $4",
            self.chain_id,
            reach,
            block_hash,
            cursor.indexed_block,
        )
        log.info("chain %s: cursor resumes at %s from fetched intervals", self.chain_id, reach)
        return Cursor(reach, block_hash, cursor.finalized_block)

    @property
    def _retry(self) -> RetryPacing:
        """index_range's fetch retry pacing: the follower's backoff, and a budget after which the step ends."""
        return RetryPacing(retry_base_s=self.backoff.base, retry_cap_s=self.backoff.cap, retry_for_s=FETCH_RETRY_FOR_S)

    async def self_check(self, cursor: Cursor, heads: Heads) -> bool:
        """Compare every stored block from ``depth`` below the cursor up to the node's head with the node; if one
        differs, roll back to the highest stored block below it that the node still serves (the finality floor
        applies: ReorgTooDeep if that would remove a block recorded as finalized). True if it rolled back."""
        lo = max(0, cursor.indexed_block - self.depth)
        bad = await find_divergence(self.conn, self.client, self.chain_id, lo, heads.head)
        if bad is None:
            return False
        ancestor, ancestor_hash = await find_common_ancestor(
            self.conn, self.client, self.chain_id, bad - 1, self.depth, cursor.finalized_block
        )
        rb = await rollback(self.conn, self.chain_id, ancestor, ancestor_hash)
        metrics.REORGS.labels(str(self.chain_id), str(rb.depth)).inc()
        log.warning(
            "chain %s: self-check: stored block %s differs from the node's; rolled back above block %s "
            "(cursor %s -> %s)",
            self.chain_id,
            bad,
            ancestor,
            cursor.indexed_block,
            min(cursor.indexed_block, ancestor),
        )
        await publish_reorg(self.redis, self.redis_prefix, rb)
        return True

    async def handle_reorg(self, cursor: Cursor) -> None:
        ancestor, ancestor_hash = await find_common_ancestor(
            self.conn, self.client, self.chain_id, cursor.indexed_block, self.depth, cursor.finalized_block
        )
        rb = await rollback(self.conn, self.chain_id, ancestor, ancestor_hash)
        metrics.REORGS.labels(str(self.chain_id), str(rb.depth)).inc()
        metrics.INDEXED_BLOCK.labels(str(self.chain_id)).set(ancestor)
        log.warning("chain %s: reorg of depth %s rolled back to block %s", self.chain_id, rb.depth, ancestor)
        await publish_reorg(self.redis, self.redis_prefix, rb)
