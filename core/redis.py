"""Redis client construction; every key goes through `Keys` so deployments and tests can share a server."""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=False, health_check_interval=30)


class Keys:
    """Namespaced Redis keys (prefix from RWA_REDIS_PREFIX)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)
