"""A real deadlock on demand, between the application's transaction and a second connection (for
core.transactions): the second connection takes a lock, the application's work starts and waits for it while
holding a lock of its own, then the second connection asks for that one. The application's engine must check for
deadlocks sooner than the second connection (`APP_SETTINGS`), so Postgres aborts the application's transaction
(40P01), never the second connection's; that one then commits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

T = TypeVar("T")
# Postgres checks once, deadlock_timeout after a wait starts: the second connection starts waiting well within
# these 2 s of the application's wait, and never checks itself first
APP_SETTINGS = {"deadlock_timeout": "2s"}


@pytest.fixture
async def app_sessions(module_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the module's own database that check for deadlocks first (import this fixture into a module)."""
    engine = create_async_engine(module_database_url, pool_size=2, connect_args={"server_settings": APP_SETTINGS})
    try:
        yield async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    finally:
        await engine.dispose()


def _dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _until_blocked_by(conn: asyncpg.Connection, blocker_pid: int) -> None:
    while not await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", blocker_pid
    ):
        await asyncio.sleep(0.01)


async def deadlock_once(
    database_url: str,
    hold: tuple[str, tuple[Any, ...]],
    then: tuple[str, tuple[Any, ...]],
    work: Callable[[], Awaitable[T]],
) -> asyncio.Future[T]:
    """Run `hold` on a second connection, start `work`; once it waits for that lock, run `then` (which must wait for
    a lock `work` holds), commit. Returns `work`'s task (its result or error)."""
    other = await asyncpg.connect(_dsn(database_url), server_settings={"deadlock_timeout": "60s"})
    watcher = await asyncpg.connect(_dsn(database_url))
    try:
        async with other.transaction():
            await other.fetch(hold[0], *hold[1])
            task = asyncio.ensure_future(work())
            waiting = asyncio.ensure_future(_until_blocked_by(watcher, other.get_server_pid()))
            await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            assert not task.done(), "the work finished without waiting for the held lock"
            await other.fetch(then[0], *then[1])
    finally:
        await other.close()
        await watcher.close()
    return task
