"""Per-URL request rate limiting for the RPC client."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """``rate`` requests/s with bursts of up to ``burst`` (GCRA form of a token bucket).

    Each ``acquire`` reserves its slot synchronously before sleeping, so concurrent tasks
    on one event loop queue fairly without a lock.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.interval = 1.0 / rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._tat = 0.0  # theoretical arrival time of the next request

    def reserve(self, now: float | None = None) -> float:
        """Take one token; return how long the caller must wait before using it."""
        now = time.monotonic() if now is None else now
        tat = max(self._tat, now)
        wait = tat - (self.burst - 1) * self.interval - now
        self._tat = tat + self.interval
        return max(0.0, wait)

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
