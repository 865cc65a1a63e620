"""Retry pacing for the indexer's loops: exponential backoff with jitter and a cap, interruptible by stop.

Every loop that retries (the follower's steps, the fetch stage of a range) waits through a ``Backoff``:
a burst of failures (a reorg racing the fetch again and again, a provider answering garbage) slows to
one attempt per ``cap`` seconds instead of spinning (before: 8,000 immediate retries in 2 minutes), and
the jitter keeps several chains or processes from retrying in step.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Backoff:
    """``next()`` gives the wait before the next attempt: base * 2^n capped at ``cap``, with equal jitter
    (half fixed, half random). ``reset()`` after a success; ``failing_for`` says how long the current run
    of failures has lasted (callers give up after a budget)."""

    def __init__(self, base: float, cap: float, *, rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"need 0 < base <= cap, got {base}, {cap}")
        self.base = base
        self.cap = cap
        self.failures = 0
        self._since: float | None = None
        self._rng = rng or random.Random()

    def next(self) -> float:
        if self._since is None:
            self._since = time.monotonic()
        delay = min(self.cap, self.base * 2 ** min(self.failures, 30))
        self.failures += 1
        return delay / 2 + self._rng.uniform(0, delay / 2)

    def reset(self) -> None:
        self.failures = 0
        self._since = None

    @property
    def failing_for(self) -> float:
        return 0.0 if self._since is None else time.monotonic() - self._since


async def sleep_or_stop(stop: asyncio.Event | None, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True if stopped."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    budget_s: float = 120.0,
    base: float = 0.25,
    cap: float = 5.0,
    stop: asyncio.Event | None = None,
) -> T:
    """``call()`` again after transient RPC failures (RetryableRpcError, AllEndpointsFailed) with backoff, for up
    to ``budget_s``; then (or on any other error) the error propagates. For one-off reads outside a retrying loop
    (a backfill's heads), so that a burst of bad replies does not end a command that would then succeed."""
    from chains.errors import AllEndpointsFailed, RetryableRpcError

    backoff = Backoff(base, max(base, cap))
    while True:
        try:
            return await call()
        except (RetryableRpcError, AllEndpointsFailed) as exc:
            if backoff.failing_for >= budget_s:
                raise
            delay = backoff.next()
            log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay)
            if await sleep_or_stop(stop, delay):
                raise
