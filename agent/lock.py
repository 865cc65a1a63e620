"""One sender per (chain, address) across processes: a session-level Postgres advisory lock held by the connection
that writes the sender's operations (as indexer/lock.py does for the indexer's writer). If the process dies or its
connection drops, Postgres releases the lock and that connection can commit nothing more, so a standby that takes
over never races a half-dead sender on nonces.
"""

from __future__ import annotations

import zlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

LOCK_CLASS = 0x52574132  # "RWA2": first key of pg_advisory_lock(int, int); the indexer uses "RWA1"


def lock_key(chain_id: int, address: str) -> int:
    """A signed 32-bit key for (chain, address) (crc32; a collision only serializes two senders)."""
    k = zlib.crc32(f"{chain_id}:{address.lower()}".encode())
    return k - 2**32 if k >= 2**31 else k


async def try_lock(conn: AsyncConnection, chain_id: int, address: str) -> bool:
    got = await conn.scalar(
        text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": LOCK_CLASS, "k": lock_key(chain_id, address)}
    )
    await conn.commit()  # session-level lock: it outlives this transaction
    return bool(got)


async def unlock(conn: AsyncConnection, chain_id: int, address: str) -> None:
    await conn.rollback()
    await conn.execute(text("SELECT pg_advisory_unlock(:c, :k)"), {"c": LOCK_CLASS, "k": lock_key(chain_id, address)})
    await conn.commit()


async def holder_count(conn: AsyncConnection, chain_id: int, address: str) -> int:
    """How many sessions hold the sender lock (0 or 1): `rwa agent status` shows whether a sender runs."""
    n = await conn.scalar(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            # pg_locks spans the whole server: another database's agent (same key) is not our sender
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = CAST(CAST(:c AS bigint) AS oid) AND objid = CAST(CAST(:k AS bigint) AS oid)"
        ),
        {"c": LOCK_CLASS & 0xFFFFFFFF, "k": lock_key(chain_id, address) & 0xFFFFFFFF},
    )
    return int(n or 0)
