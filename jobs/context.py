"""What actors run against: settings, a DB session factory, Redis and an HTTP client, built lazily once per
event loop (dramatiq's AsyncIO middleware runs every async actor on one loop thread per worker process).

Tests point the jobs at their database with `configure(settings)`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core import tracing
from core.pubsub import PubSubHub
from core.redis import create_redis
from core.settings import Settings, get_settings
from resolvers.payments.webhooks import delivery_client

_settings: Settings | None = None


@dataclass
class JobContext:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    redis: Redis | None
    http: httpx.AsyncClient
    _hub: PubSubHub | None = None

    @property
    def prefix(self) -> str:
        return self.settings.redis_prefix

    @property
    def hub(self) -> PubSubHub | None:
        """What jobs publish market data through (the API's subscribers listen on the same prefix); None without
        Redis. Built on first use: it subscribes to nothing."""
        if self._hub is None and self.redis is not None:
            self._hub = PubSubHub(self.redis, self.prefix)
        return self._hub

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


_contexts: dict[int, JobContext] = {}


def configure(settings: Settings | None) -> None:
    """Use these settings for every context built from now on (None: back to the environment's)."""
    global _settings
    _settings = settings


def settings() -> Settings:
    return _settings or get_settings()


def job_context() -> JobContext:
    loop = asyncio.get_running_loop()
    ctx = _contexts.get(id(loop))
    if ctx is None or ctx.settings is not settings():
        s = settings()
        if not s.database_url:
            raise RuntimeError("DATABASE_URL is not set for the job worker (start it through `rwa worker`)")
        engine = create_async_engine(s.database_url, pool_size=5, max_overflow=5, pool_pre_ping=True)
        tracing.instrument_engine(engine)
        ctx = _contexts[id(loop)] = JobContext(
            settings=s,
            engine=engine,
            session_factory=async_sessionmaker(engine, expire_on_commit=False, autoflush=False),
            redis=create_redis(s.redis_url) if s.redis_url else None,
            http=delivery_client(),
        )
    return ctx


async def close_current() -> None:
    ctx = _contexts.pop(id(asyncio.get_running_loop()), None)
    if ctx is not None:
        await ctx.aclose()
