"""Fetch stage: logs of the watched contracts over a block range, and the blocks they sit in.

``fetch_ranges`` walks [from, to] with adaptive eth_getLogs spans and yields ``FetchedRange``
batches of about ``max_events`` logs, each with:
- the blocks holding its logs, its end block, and every block above ``finalized`` (so the
  unfinalized part of the chain is stored as a parent-hash chain for reorg detection);
- the investor country of each IdentityRegistered (not in the event: read with eth_call at
  that block hash, or at a recent block where the node keeps no state that old: indexer/countries.py).
Each batch is checked for internal consistency (log block hashes = fetched block hashes,
parent hashes chain); a reorg racing the fetch raises InconsistentFetch and the caller retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from chains.errors import AllEndpointsFailed, LogRangeTooLarge, RpcError, RpcTimeout
from chains.log_range import AdaptiveLogRange
from chains.rpc import RpcClient
from chains.spec import ChainSpec
from indexer.errors import InconsistentFetch
from indexer.countries import CountryReading, read_countries
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
    """Blocks by number (batched); InconsistentFetch if the node does not know one (it went away)."""
    numbers = sorted(set(numbers))
    got = await client.get_blocks(numbers)
    blocks: dict[int, dict[str, Any]] = {}
    for n, blk in zip(numbers, got):
        if blk is None:
            raise InconsistentFetch(f"node has no block {n} (chain shortened?)")
        blocks[n] = {"hash": blk["hash"], "parentHash": blk["parentHash"], "timestamp": blk["timestamp"]}
    return blocks


def check_consistency(batch: FetchedRange) -> None:
    """Raise InconsistentFetch if the logs and blocks of one batch come from different forks."""
    blocks = batch.blocks
    for lg in batch.logs:
        if lg.get("removed"):
            raise InconsistentFetch(f"removed log in block {int(lg['blockNumber'], 16)}")
        n = int(lg["blockNumber"], 16)
        if blocks[n]["hash"] != lg["blockHash"]:
            raise InconsistentFetch(f"log block hash differs from block {n}'s hash")
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
) -> AsyncIterator[FetchedRange]:
    """Yield consistent batches covering [from_block, to_block] exactly once, in order."""
    start = from_block
    while start <= to_block:
        end, logs = await _logs_until(client, addresses, start, to_block, ranger, max_events, logs_per_call, timeout)
        wanted = {int(lg["blockNumber"], 16) for lg in logs}
        wanted.add(end)
        wanted.update(range(max(start, finalized + 1), end + 1))
        blocks = await fetch_blocks(client, sorted(wanted))
        batch = FetchedRange(chain_id, start, end, logs, blocks)
        check_consistency(batch)
        batch.countries = await read_countries(client, logs)
        yield batch
        start = end + 1
