"""Fetch stage: logs of the watched contracts over a block range, and the blocks they sit in.

``fetch_ranges`` walks [from, to] and yields ``FetchedRange`` batches of about ``max_events`` logs.
Every block the cursor passes is proven to be the block whose logs were read:
- at or below ``finalized`` (blocks that cannot change) logs are read by number over adaptive
  eth_getLogs spans, and only the blocks holding logs plus the batch end are fetched;
- above it (the reorg window) the headers come first, then each header's logs by its block hash
  (EIP-234), so a reorg between the two reads cannot pair one fork's (empty) logs with the other
  fork's block: by number, an empty read on the old fork followed by the new fork's block lost
  the new block's Transfer for good. Every window block is kept as a parent-hash chain.
Each batch also carries:
- the investor country of each IdentityRegistered (not in the event: read with eth_call at
  that block hash, or at a recent block where the node keeps no state that old: indexer/countries.py).
Each batch is checked for internal consistency (log block hashes = fetched block hashes, logs
inside the range, parent hashes chain, also across batches); a reorg racing the fetch raises
InconsistentFetch and the caller retries after a backoff (indexer/pipeline.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from chains.errors import AllEndpointsFailed, LogRangeTooLarge, RpcError, RpcTimeout
from chains.log_range import AdaptiveLogRange
from chains.rpc import RpcClient
from chains.spec import ChainSpec
from indexer.countries import CountryReading, read_countries
from indexer.errors import InconsistentFetch
from indexer.events import WATCHED_TOPIC0S


@dataclass(slots=True)
class FetchedRange:
    chain_id: int
    from_block: int
    to_block: int
    logs: list[dict[str, Any]]
    blocks: dict[int, dict[str, Any]]  # number -> raw block (hash, parentHash, timestamp as hex)
    countries: dict[tuple[str, int], CountryReading] = field(default_factory=dict)  # (block hash, log index) ->

    @property
    def end_hash(self) -> str:
        return str(self.blocks[self.to_block]["hash"])


def _shrinkable(err: RpcError) -> bool:
    # A timeout on eth_getLogs usually means the node scans too much, not that it is down.
    return isinstance(err, LogRangeTooLarge | RpcTimeout) or (isinstance(err, AllEndpointsFailed) and err.all_timeouts)


class LogSpan(AdaptiveLogRange):
    """AdaptiveLogRange that also remembers the densest span seen lately (logs per block, halved
    after each call), so it does not grow back into a dense region at full speed."""

    def __init__(self, initial: int, floor: int = 1, ceiling: int | None = None) -> None:
        super().__init__(initial, floor, ceiling)
        self.density = 0.0


def make_ranger(spec: ChainSpec, initial_span: int | None = None) -> LogSpan:
    """Start at one block (a dense token returns thousands of logs per block); ``steer`` grows it
    while results stay sparse, so a quiet history reaches the spec's maximum span in a few calls."""
    initial = initial_span if initial_span is not None else 1
    return LogSpan(initial, spec.max_logs_range_floor, max(initial, spec.max_logs_range))


def steer(ranger: AdaptiveLogRange, span: int, n_logs: int, logs_per_call: int) -> None:
    """Aim the next span at ``logs_per_call`` logs: proportional shrink; growth at most x2 per call
    and, for a LogSpan, no further than the recent peak density allows (bounds memory per call)."""
    density = n_logs / span
    if isinstance(ranger, LogSpan):
        ranger.density = max(density, ranger.density / 2)
        density = ranger.density
    if density * span > logs_per_call and span > 1:
        ranger.size = max(ranger.floor, min(ranger.size, int(logs_per_call / density)))
    elif span >= ranger.size and density * span < logs_per_call / 2:
        target = span * 2 if density == 0 else min(span * 2, int(logs_per_call / density))
        ranger.size = max(ranger.floor, min(ranger.ceiling, target))
    elif density * span > logs_per_call:
        ranger.size = ranger.floor


async def _logs_until(
    client: RpcClient,
    addresses: Sequence[str],
    start: int,
    to_block: int,
    ranger: AdaptiveLogRange,
    max_events: int,
    logs_per_call: int,
    timeout: float | None,
) -> tuple[int, list[dict[str, Any]]]:
    """Logs from ``start`` on, span after span, until ``max_events`` or ``to_block``; returns (end, logs)."""
    logs: list[dict[str, Any]] = []
    end = start - 1
    while end < to_block and len(logs) < max_events:
        s = end + 1
        e = min(to_block, s + ranger.size - 1)
        try:
            got = await client.get_logs(list(addresses), [WATCHED_TOPIC0S], s, e, timeout=timeout)
        except RpcError as err:
            suggested = None
            if isinstance(err, LogRangeTooLarge) and err.suggested_range is not None:
                lo, hi = err.suggested_range
                suggested = hi - s + 1 if lo == s and hi < e else None
            if _shrinkable(err) and ranger.shrink(e - s + 1, suggested):
                continue
            raise
        steer(ranger, e - s + 1, len(got), logs_per_call)
        logs.extend(got)
        end = e
    return end, logs


async def fetch_blocks(client: RpcClient, numbers: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Blocks by number (batched). Each must exist (at or below a head the node reported): a null
    answer is BlockUnavailable, retried and failed over by the client, never taken as a reorg."""
    numbers = sorted(set(numbers))
    got = await client.get_blocks(numbers, require=True)
    blocks: dict[int, dict[str, Any]] = {}
    for n, blk in zip(numbers, got):
        if blk is None or int(blk["number"], 16) != n:
            raise InconsistentFetch(f"node answered another block for block {n}")
        blocks[n] = {"hash": blk["hash"], "parentHash": blk["parentHash"], "timestamp": blk["timestamp"]}
    return blocks


# Blocks per batch of by-hash log reads (one eth_getLogs per block in one JSON-RPC batch).
MAX_BLOCKS_BY_HASH = 128


async def _window_by_hash(
    client: RpcClient,
    addresses: Sequence[str],
    start: int,
    to_block: int,
    ranger: AdaptiveLogRange,
    max_events: int,
    logs_per_call: int,
) -> tuple[int, list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Unfinalized blocks from ``start``: headers by number (one batch for up to MAX_BLOCKS_BY_HASH), then the
    logs of exactly those headers by block hash, chunk after chunk (``ranger.size`` blocks, steered like
    spans) until ``max_events`` or ``to_block``. Returns (end, logs, blocks); a header the node no longer
    knows fails the read (the client retries "unknown block" on the next URL; the caller retries the batch
    after a backoff)."""
    last = min(to_block, start + MAX_BLOCKS_BY_HASH - 1)
    headers = await fetch_blocks(client, range(start, last + 1))
    logs: list[dict[str, Any]] = []
    end = start - 1
    while end < last and len(logs) < max_events:
        s = end + 1
        e = min(last, s + max(1, ranger.size) - 1)
        per_block = await client.get_logs_by_hash(
            list(addresses), [WATCHED_TOPIC0S], [headers[n]["hash"] for n in range(s, e + 1)]
        )
        got = 0
        for n, block_logs in zip(range(s, e + 1), per_block):
            want = headers[n]["hash"]
            for lg in block_logs:
                if lg.get("blockHash") != want:
                    raise InconsistentFetch(f"logs read by hash for block {n} name another block")
            got += len(block_logs)
            logs.extend(block_logs)
        steer(ranger, e - s + 1, got, logs_per_call)
        end = e
    return end, logs, {n: headers[n] for n in range(start, end + 1)}


_LOG_KEYS = frozenset(
    ("blockNumber", "blockHash", "logIndex", "transactionHash", "transactionIndex", "address", "topics", "data")
)


def check_consistency(batch: FetchedRange, parent_hash: str | None = None) -> None:
    """Raise InconsistentFetch if the logs and blocks of one batch come from different forks, a log lies
    outside the batch or lacks a field, or the batch does not extend ``parent_hash`` (the previous
    batch's end)."""
    blocks = batch.blocks
    keys = _LOG_KEYS
    checked: dict[tuple[str, str], None] = {}  # (block number, block hash) pairs already checked: a busy block
    for lg in batch.logs:  # repeats them for thousands of logs
        if not keys <= lg.keys():
            raise InconsistentFetch(f"log without {', '.join(sorted(keys - lg.keys()))}")
        if lg.get("removed"):
            raise InconsistentFetch(f"removed log in block {lg['blockNumber']}")
        pair = (lg["blockNumber"], lg["blockHash"])
        if pair in checked:
            continue
        try:
            n = int(pair[0], 16)
        except (TypeError, ValueError):
            raise InconsistentFetch(f"log with block number {lg['blockNumber']!r:.40}") from None
        blk = blocks.get(n)
        if blk is None or not batch.from_block <= n <= batch.to_block:
            raise InconsistentFetch(f"log of block {n} outside [{batch.from_block}, {batch.to_block}]")
        if blk["hash"] != pair[1]:
            raise InconsistentFetch(f"log block hash differs from block {n}'s hash")
        checked[pair] = None
    first = blocks.get(batch.from_block)
    if parent_hash is not None and first is not None and first["parentHash"] != parent_hash:
        raise InconsistentFetch(f"block {batch.from_block} does not extend the previous batch")
    prev_n, prev_hash = None, None
    for n in sorted(blocks):
        if prev_n is not None and n == prev_n + 1 and blocks[n]["parentHash"] != prev_hash:
            raise InconsistentFetch(f"block {n} does not extend block {prev_n}")
        prev_n, prev_hash = n, blocks[n]["hash"]


async def fetch_ranges(
    client: RpcClient,
    chain_id: int,
    addresses: Sequence[str],
    from_block: int,
    to_block: int,
    *,
    finalized: int,
    ranger: AdaptiveLogRange,
    max_events: int = 20_000,
    logs_per_call: int = 10_000,
    timeout: float | None = None,
    parent_hash: str | None = None,
) -> AsyncGenerator[FetchedRange, None]:
    """Yield consistent batches covering [from_block, to_block] exactly once, in order: by number up to
    ``finalized``, by block hash above it. ``parent_hash``: the hash of block from_block - 1 if known
    (each batch must extend the one before)."""
    start = from_block
    while start <= to_block:
        if start <= finalized:
            end, logs = await _logs_until(
                client, addresses, start, min(to_block, finalized), ranger, max_events, logs_per_call, timeout
            )
            wanted = set()
            try:
                for hex_n in {lg["blockNumber"] for lg in logs}:
                    wanted.add(int(hex_n, 16))
            except (KeyError, TypeError, ValueError):
                raise InconsistentFetch("log without a block number") from None
            wanted.add(end)
            blocks = await fetch_blocks(client, sorted(w for w in wanted if start <= w <= end))
        else:
            end, logs, blocks = await _window_by_hash(
                client, addresses, start, to_block, ranger, max_events, logs_per_call
            )
        batch = FetchedRange(chain_id, start, end, logs, blocks)
        check_consistency(batch, parent_hash)
        batch.countries = await read_countries(client, logs)
        yield batch
        parent_hash = batch.end_hash
        start = end + 1
