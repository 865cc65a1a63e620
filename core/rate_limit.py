"""Fixed-window rate limits on Redis counters (shared by every API process)."""

from __future__ import annotations

from redis.asyncio import Redis

from core.errors import RateLimited


async def hit(redis: Redis, key: str, limit: int, window_s: int, what: str = "requests") -> None:
    """Count one attempt under `key`; raise RateLimited once `limit` is passed within the window."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s, nx=True)
        pipe.ttl(key)
        count, _, ttl = await pipe.execute()
    if int(count) > limit:
        raise RateLimited(f"too many {what}; retry later", retry_after=max(int(ttl), 1))
