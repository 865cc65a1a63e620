"""Alembic environment: runs migrations on the async engine, serialised by a Postgres advisory lock so that
several `rwa` processes starting at once do not race."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import models
from core.migrate import MIGRATION_LOCK_ID, MigrationBusy

config = context.config
target_metadata = models.Base.metadata

# who holds the migration lock in this database (for MigrationBusy's message)
_HOLDER_SQL = text("""
SELECT a.pid, a.application_name AS application, host(a.client_addr) AS client, a.backend_start::timestamp(0)::text
       AS since
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = :id AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1
""")


def _lock(connection: Connection) -> None:
    """Take the migration lock: wait for it (processes migrating on start), or refuse at once when another session
    holds it (`rwa migrate`: config.attributes["try_lock"])."""
    if not config.attributes.get("try_lock"):
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        return
    if not connection.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID}).scalar():
        holder = connection.execute(_HOLDER_SQL, {"id": MIGRATION_LOCK_ID}).mappings().first()
        connection.rollback()
        raise MigrationBusy(dict(holder) if holder else None)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, compare_type=True, transaction_per_migration=False
    )
    _lock(connection)
    try:
        # after the lock (lock_timeout would also bound the wait for it): every DDL below waits at most this long for
        # a table lock, and runs at most this long (0: no limit)
        for name in ("lock_timeout", "statement_timeout"):
            ms = int(config.attributes.get(f"{name}_ms") or 0)
            connection.execute(text(f"SET {name} = {ms}"))
        with context.begin_transaction():
            context.run_migrations()
    except BaseException:
        connection.rollback()  # the transaction is aborted (nothing applied): unlocking needs a fresh one
        raise
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=None)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_async(config.get_main_option("sqlalchemy.url")))


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run()
