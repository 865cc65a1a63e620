"""Versions of the cached reads (server/response_cache.py), one Redis counter per tag.

A successful mutation bumps the tags it may change (schema/mutations.py, after its commit and before its answer is
sent), so no API process serves a cached answer older than a write its caller saw succeed. Trading mutations
change market data only (tag `market`); every other mutation bumps `all`, which every cached answer depends on.

Concurrent mutations share a round trip (`bump`): the bumps that arrive within one event-loop tick, or while the
previous batch is on its way to Redis, go in one pipeline with one INCR per tag. A batch is sealed before it is
sent, so every INCR a caller waits for is sent after the caller's commit: a read that starts after any mutation
has answered still sees a version newer than every answer cached from before that commit.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable

from redis.asyncio import Redis

from core.redis import Keys

ALL = "all"
MARKET = "market"
# mutations whose writes are only visible in market data (markets, order books, trades, candles, tickers) and in
# per-user reads (orders, balances), which are never cached
MARKET_ONLY = frozenset(
    {
        "placeOrder",
        "cancelOrder",
        "cancelAllOrders",
        "openMarket",
        "setMarketStatus",
        "creditCash",
        "setMarketRiskLimits",
        "killMarket",
        "setMarketMaker",
        "removeMarketMaker",
    }
)


def tags_changed_by(mutation: str) -> tuple[str, ...]:
    return (MARKET,) if mutation in MARKET_ONLY else (ALL,)


def version_key(keys: Keys, tag: str) -> str:
    return keys("cache", "v", tag)


class _Bumper:
    """One process's bumps for one Redis client and key prefix, on one event loop, coalesced."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self.loop = asyncio.get_running_loop()
        self._tags: set[str] = set()
        self._batch: asyncio.Future[None] | None = None  # the batch still open to joiners
        self._flusher: asyncio.Task[None] | None = None

    async def bump(self, tags: Iterable[str]) -> None:
        if self._batch is None:
            self._batch = self.loop.create_future()
        batch = self._batch
        self._tags.update(tags)
        if self._flusher is None:  # starts on the next tick: bumps of this tick join the batch
            self._flusher = self.loop.create_task(self._flush())
        await asyncio.shield(batch)  # a cancelled caller does not cancel the others' round trip

    async def _flush(self) -> None:
        try:
            while self._batch is not None:
                batch, tags = self._batch, self._tags
                self._batch, self._tags = None, set()  # sealed: later callers wait for the next round trip
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for tag in sorted(tags):
                            pipe.incr(version_key(self.keys, tag))
                        await pipe.execute()
                except asyncio.CancelledError:
                    batch.cancel()
                    raise
                except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets the error
                    batch.set_exception(exc)
                    batch.add_done_callback(_retrieve)  # callers that were cancelled meanwhile never read it
                else:
                    batch.set_result(None)
        finally:
            if self._batch is not None:
                self._batch.cancel()  # cancelled (loop shutting down): nobody will send it
                self._batch, self._tags = None, set()
            self._flusher = None


def _retrieve(future: asyncio.Future[None]) -> None:
    future.exception()


_bumpers: weakref.WeakKeyDictionary[Redis, dict[str, _Bumper]] = weakref.WeakKeyDictionary()


async def bump(redis: Redis, keys: Keys, tags: Iterable[str]) -> None:
    """Returns once Redis has incremented `tags`' versions by an INCR sent after this call began."""
    by_prefix = _bumpers.setdefault(redis, {})
    bumper = by_prefix.get(keys.prefix)
    if bumper is None or bumper.loop is not asyncio.get_running_loop():
        bumper = by_prefix[keys.prefix] = _Bumper(redis, keys)
    await bumper.bump(tags)


async def current(redis: Redis, keys: Keys, tags: tuple[str, ...]) -> tuple[int, ...]:
    values = await redis.mget([version_key(keys, t) for t in tags])
    return tuple(int(v or 0) for v in values)
