"""Adaptive eth_getLogs ranges: shrink when the provider refuses, grow while results are sparse."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from chains.errors import AllEndpointsFailed, LogRangeTooLarge, RpcError, RpcTimeout
from chains.rpc import RpcClient
from chains.spec import ChainSpec


class AdaptiveLogRange:
    """The block span for the next eth_getLogs call.

    Halves (never below ``floor``) when a span was refused or timed out; doubles (up to
    ``ceiling``) after a full-size span returned fewer than ``sparse_below`` logs.
    """

    def __init__(self, initial: int, floor: int = 1, ceiling: int | None = None, *, sparse_below: int = 1000) -> None:
        ceiling = ceiling if ceiling is not None else max(initial, floor)
        if not 1 <= floor <= initial <= ceiling:
            raise ValueError(f"need 1 <= floor <= initial <= ceiling, got {floor}, {initial}, {ceiling}")
        self.size = initial
        self.floor = floor
        self.ceiling = ceiling
        self.sparse_below = sparse_below

    @classmethod
    def for_chain(cls, spec: ChainSpec, *, initial: int | None = None) -> AdaptiveLogRange:
        start = initial if initial is not None else spec.max_logs_range
        return cls(start, spec.max_logs_range_floor, max(start, spec.max_logs_range))

    def shrink(self, failed_span: int, suggested_span: int | None = None) -> bool:
        """Make the next span smaller than ``failed_span``; False if it is already at the floor."""
        if failed_span <= self.floor:
            return False
        target = failed_span // 2
        if suggested_span is not None and 1 <= suggested_span < failed_span:
            target = suggested_span  # the provider told us what fits
        self.size = max(self.floor, min(self.size, target))
        return True

    def observe(self, span: int, n_logs: int) -> None:
        """Record a successful span; grow after a full-size one that came back sparse."""
        if span >= self.size and n_logs < self.sparse_below:
            self.size = min(self.ceiling, self.size * 2)


def _should_shrink(err: RpcError) -> bool:
    # A timeout on eth_getLogs usually means the node is scanning too much, not that it is down.
    return isinstance(err, LogRangeTooLarge | RpcTimeout) or (isinstance(err, AllEndpointsFailed) and err.all_timeouts)


async def iter_logs(
    client: RpcClient,
    addresses: str | Sequence[str] | None,
    topics: Sequence[str | Sequence[str] | None] | None,
    from_block: int,
    to_block: int,
    ranger: AdaptiveLogRange,
    *,
    timeout: float | None = None,
) -> AsyncIterator[tuple[int, int, list[dict[str, Any]]]]:
    """Yield ``(from, to, logs)`` covering ``[from_block, to_block]`` exactly once, in order.

    Raises the provider's error when a span at the floor is still refused. Timeouts only shrink
    the range once the client has given up on them (after its retries/failover); a client with
    a short ``timeout`` and few retries lets the range adapt sooner.
    """
    if from_block > to_block:
        return
    start = from_block
    while start <= to_block:
        end = min(to_block, start + ranger.size - 1)
        try:
            logs = await client.get_logs(addresses, topics, start, end, timeout=timeout)
        except RpcError as err:
            if not _should_shrink(err):
                raise
            suggested = None
            if isinstance(err, LogRangeTooLarge) and err.suggested_range is not None:
                lo, hi = err.suggested_range
                # Only trust a hint that starts where we asked (some hints are for another window).
                suggested = hi - start + 1 if lo == start and hi < end else None
            if not ranger.shrink(end - start + 1, suggested):
                raise
            continue
        ranger.observe(end - start + 1, len(logs))
        yield start, end, logs
        start = end + 1
