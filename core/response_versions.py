"""Versions of the cached reads (server/response_cache.py), one Redis counter per tag.

A successful mutation bumps the tags it may change (schema/mutations.py, after its commit and before its answer is
sent), so no API process serves a cached answer older than a write its caller saw succeed. Trading mutations
change market data only (tag `market`); every other mutation bumps `all`, which every cached answer depends on.
"""

from __future__ import annotations

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


async def bump(redis: Redis, keys: Keys, tags: Iterable[str]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for tag in tags:
            pipe.incr(version_key(keys, tag))
        await pipe.execute()


async def current(redis: Redis, keys: Keys, tags: tuple[str, ...]) -> tuple[int, ...]:
    values = await redis.mget([version_key(keys, t) for t in tags])
    return tuple(int(v or 0) for v in values)
