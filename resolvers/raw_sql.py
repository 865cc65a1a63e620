"""The asyncpg connection under a SQLAlchemy AsyncSession, for hot paths (placing orders, ledger postings).

SQLAlchemy's per-statement overhead (building the statement, its cache key, the ORM execute path, result
processing) costs ~0.3-0.7 ms of CPU per statement here; asyncpg with its prepared-statement cache costs a few
tens of microseconds. Statements run on the session's own connection and inside its transaction, so they commit or
roll back with everything else the session did.

Notes for SQL written against it: parameters are $1..$n; enums go in as their (str) values and come back as str;
jsonb parameters take a JSON string (SQLAlchemy's codec on these connections); errors are asyncpg exceptions
(asyncpg.UniqueViolationError, ...), not sqlalchemy.exc ones.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession


async def pg(session: AsyncSession) -> asyncpg.Connection:
    """The session's driver connection, with its transaction begun (SQLAlchemy begins it lazily, at the first
    statement; a statement run here first would otherwise autocommit, e.g. release an xact advisory lock at once)."""
    conn = await session.connection()
    adapted: Any = (await conn.get_raw_connection()).dbapi_connection
    if adapted._transaction is None and adapted.isolation_level != "autocommit":
        await adapted._start_transaction()
    return adapted.driver_connection
