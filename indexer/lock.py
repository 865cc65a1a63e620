"""One writer per chain: a session-level Postgres advisory lock held by the connection that writes.

The lock and the writes share the connection on purpose: if the process dies or its connection
drops, Postgres releases the lock and the same connection can no longer commit anything, so a
standby that takes over never races a half-dead leader.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

from core.dsn import asyncpg_dsn as asyncpg_dsn  # re-exported: the indexer's and the benches' name for it

LOCK_CLASS = 0x52574131  # "RWA1": the first key of pg_advisory_lock(int, int); the second is the chain id


def application_name(chain_id: int, role: str = "indexer") -> str:
    """Visible in pg_stat_activity: which process holds or waits for which chain."""
    return f"rwa-{role}:{chain_id}:{os.getpid()}"


async def connect(database_url: str, chain_id: int, role: str = "indexer") -> asyncpg.Connection:
    return await asyncpg.connect(
        asyncpg_dsn(database_url), server_settings={"application_name": application_name(chain_id, role)}
    )


async def try_lock(conn: asyncpg.Connection, chain_id: int) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, chain_id))


async def wait_for_lock(conn: asyncpg.Connection, chain_id: int, stop: asyncio.Event, retry_s: float) -> bool:
    """Poll until this connection holds the chain's lock (True) or ``stop`` is set (False)."""
    while not stop.is_set():
        if await try_lock(conn, chain_id):
            return True
        try:
            await asyncio.wait_for(stop.wait(), timeout=retry_s)
        except TimeoutError:
            pass
    return False
