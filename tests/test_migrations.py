"""Models and migrations must agree: a model change without a migration (or the reverse) fails here."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

import models


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:

        def diff(sync_conn):  # type: ignore[no-untyped-def]
            ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
            return compare_metadata(ctx, models.Base.metadata)

        changes = await conn.run_sync(diff)
    assert changes == [], f"models and migrations disagree; run `python -m core.migrate <msg> <rev>`: {changes}"


async def test_downgrade_and_upgrade_round_trip(database_url: str) -> None:
    """Every migration can be undone and redone (checked on a scratch database)."""
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    from core.migrate import downgrade, upgrade

    name = f"rwa_roundtrip_{uuid.uuid4().hex[:8]}"
    dsn = make_url(database_url).set(drivername="postgresql", database="postgres").render_as_string(False)
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(database_url).set(database=name).render_as_string(False)
        await upgrade(url)
        await downgrade(url)
        conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
        try:
            left = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_name <> 'alembic_version'"
            )
            types = await conn.fetch(
                "SELECT typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE n.nspname = 'public' AND t.typtype = 'e'"
            )
        finally:
            await conn.close()
        assert [r[0] for r in left] == [] and [r[0] for r in types] == [], (left, types)
        await upgrade(url)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_hex_columns_compare_bytewise(engine: AsyncEngine) -> None:
    """Addresses (varchar 42) and hashes (varchar 66) use collation "C" (models.base.Address / Hash32): under a
    locale collation the indexer's bulk inserts are ~3x slower, and joining a "C" column with a locale one fails."""
    from sqlalchemy import text

    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND data_type = 'character varying' "
                    "AND character_maximum_length IN (42, 66) ORDER BY 1, 2"
                )
            )
        ).all()
    assert len(rows) > 30  # the chain, token, payment and trading tables are all there
    assert [r for r in rows if r.collation_name != "C"] == []
