"""Fixed-window rate limits on Redis counters (shared by every API process).

One Lua script per hit keeps INCR and the first EXPIRE atomic, and works on Redis 6.2 (the embedded server),
which has no `EXPIRE ... NX`.
"""

from __future__ import annotations

from redis.asyncio import Redis

from core.errors import RateLimited

_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""


async def hit(redis: Redis, key: str, limit: int, window_s: int, what: str = "requests") -> None:
    """Count one attempt under `key`; raise RateLimited once `limit` is passed within the window."""
    count, ttl = await redis.eval(_HIT, 1, key, window_s)
    if int(count) > limit:
        raise RateLimited(f"too many {what}; retry later", retry_after=max(int(ttl), 1))
