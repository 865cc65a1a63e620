"""Process-wide services the API needs, built once at startup and shared by every request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.db import SessionFactory, create_engine, create_read_session_factory, create_session_factory
from core.dsn import asyncpg_dsn
from core.encryption import FieldCipher, parse_key
from core.jwt_keys import KeyRing
from core.pubsub import PubSubHub
from core.redis import Keys, create_redis
from core.revocation import RevocationList
from core.settings import Settings


class FairReadPool:
    """An asyncpg pool whose waiters are served in arrival order. asyncpg's pool queue lets a newcomer take a
    just-released connection before the waiter that was woken for it, which then queues again at the back: with
    more concurrent requests than connections, a few requests starved (api_me p99 ~100 ms at a p50 of 14 ms). A
    fair semaphore as large as the pool admits callers in order, so the pool itself never has waiters.

    A connection stays checked out between statements (`_idle`): the pool's acquire and release cost more Python
    than the statement (a proxy object, a shielded release task, a reset coroutine and an inactivity timer per
    statement: ~5% of `{ me { id } }`'s CPU). It goes back to the pool, which then does its usual work (waiting out a
    cancellation, terminating a broken connection, max_queries, expired generations), when a statement on it raises
    anything (cancellation included), after HOLD_STATEMENTS statements, and when the pool closes."""

    HOLD_STATEMENTS = 1000

    def __init__(self, pool: Any, size: int) -> None:
        self.pool = pool
        self._gate = asyncio.Semaphore(size)
        self._idle: list[list[Any]] = []  # [connection, statements left before it goes back to the pool]
        self._closing = False

    async def fetchrow(self, sql: str, *params: Any) -> Any:
        return await self._run("fetchrow", sql, params)

    async def fetch(self, sql: str, *params: Any) -> list[Any]:
        return await self._run("fetch", sql, params)

    async def _run(self, method: str, sql: str, params: tuple[Any, ...]) -> Any:
        async with self._gate:
            held = self._take() or [await self.pool.acquire(), self.HOLD_STATEMENTS]
            try:
                result = await getattr(held[0], method)(sql, *params)
            except BaseException:
                await self.pool.release(held[0])
                raise
            held[1] -= 1
            if held[1] > 0 and not self._closing:
                self._idle.append(held)
            else:
                await self.pool.release(held[0])
            return result

    def _take(self) -> list[Any] | None:
        """The last connection put back whose socket is still open; a connection that closed while kept (the server
        went away) is dropped: asyncpg already gave it back to the pool (the proxy's `_con` is then None), or
        terminating it does, and the pool connects anew on the next acquire as before."""
        idle = self._idle
        while idle:
            held = idle.pop()
            con = held[0]._con
            if con is not None and not con.is_closed():
                return held
            if con is not None:
                con.terminate()
        return None

    async def close(self) -> None:
        self._closing = True  # statements still running give their connections back (Pool.close waits for them)
        idle, self._idle = self._idle, []
        for con, _ in idle:
            await self.pool.release(con)
        await self.pool.close()


@dataclass
class Services:
    settings: Settings
    session_factory: SessionFactory
    redis: Redis
    keyring: KeyRing
    cipher: FieldCipher
    engine: AsyncEngine | None = None
    # autocommit sessions for read-only operations; defaults to session_factory (tests bind both to one transaction)
    read_session_factory: SessionFactory | None = None
    keys: Keys = field(init=False)

    def __post_init__(self) -> None:
        self.keys = Keys(self.settings.redis_prefix)
        self._pubsub: PubSubHub | None = None
        self.read_pool: FairReadPool | None = None  # see open_read_pool
        # revoked sessions, users and API keys of every process; mirrored in memory once started (see start)
        self.revocations = RevocationList(self.redis, self.keys, self.settings.access_token_ttl_s)
        self.api_key_cache: dict[str, Any] = {}  # resolvers.viewer
        self.oauth_pepper: bytes | None = None  # resolvers.identity.oauth_clients, derived on first use
        # sessions bound to one connection (tests: one rolled-back transaction) cannot run concurrently: such
        # services resolve a query's root fields one after the other (schema.fast_executor)
        self.single_connection = isinstance(getattr(self.session_factory, "kw", {}).get("bind"), AsyncConnection)
        self._user_changes: Any = None

    async def start(self) -> None:
        """Background work of a serving process: the read pool, the revocation mirror, and (when the app owns
        its engine) the listener that revokes the tokens of users changed in the database."""
        await self.open_read_pool()
        await self.revocations.start()
        if self.engine is not None and self._user_changes is None:
            from core.user_changes import UserChangeListener

            self._user_changes = UserChangeListener(self._asyncpg_dsn(), self.revocations)
            await self._user_changes.start()

    def _asyncpg_dsn(self) -> str:
        return asyncpg_dsn(self.settings.database_url or "")

    async def open_read_pool(self) -> None:
        """asyncpg pool for single-statement hot reads (`Context.fetch_one`): ~40% less CPU per read than going
        through an SQLAlchemy session. Opened at startup when the app owns its engine."""
        if self.engine is None or self.read_pool is not None:
            return
        import asyncpg

        dsn = self._asyncpg_dsn()
        size = self.settings.db_pool_size
        self.read_pool = FairReadPool(
            await asyncpg.create_pool(dsn, min_size=1, max_size=size, reset=_keep_session_state), size
        )

    @property
    def pubsub(self) -> PubSubHub:
        """This process's fan-out hub: one Redis subscription per channel (keys prefixed like every key)."""
        if self._pubsub is None:
            self._pubsub = PubSubHub(self.redis, self.settings.redis_prefix)
        return self._pubsub

    async def aclose(self) -> None:
        if self._user_changes is not None:
            await self._user_changes.stop()
        await self.revocations.stop()
        if self.read_pool is not None:
            await self.read_pool.close()
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self.redis.aclose()
        if self.engine is not None:
            await self.engine.dispose()


async def _keep_session_state(connection: Any) -> None:
    """The read pool runs single read statements of fixed SQL (no SET, LISTEN, cursors or advisory locks), so
    there is no session state to reset: asyncpg's default reset costs a round trip on every release. (asyncpg still
    rolls back a transaction left open and drops listeners before calling this.)"""


def dev_cipher_key(settings: Settings) -> bytes:
    """Development only: a per-data-dir key so encrypted rows survive restarts."""
    import os

    path = settings.data_path() / "kyc-dev-aes256.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(os.urandom(32).hex())
        tmp.chmod(0o600)
        tmp.replace(path)
    return parse_key(path.read_text())


def build_cipher(settings: Settings) -> FieldCipher:
    """The personal-data cipher: encrypts under KYC_ENCRYPTION_KEY, also decrypts under the retired keys."""
    key = (
        parse_key(settings.kyc_encryption_key.get_secret_value())
        if settings.kyc_encryption_key
        else dev_cipher_key(settings)
    )
    return FieldCipher(key, settings.kyc_retired_keys())


def build_services(settings: Settings) -> Services:
    assert settings.database_url and settings.redis_url, "resolve embedded services before building the app"
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    return Services(
        settings=settings,
        session_factory=create_session_factory(engine),
        read_session_factory=create_read_session_factory(engine),
        redis=create_redis(settings.redis_url),
        keyring=KeyRing.from_settings(settings),
        cipher=build_cipher(settings),
        engine=engine,
    )
