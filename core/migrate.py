"""Apply Alembic migrations programmatically (`rwa migrate`, embedded startup, tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


async def _run(database_url: str, step: str, revision: str) -> None:
    """Run an alembic command (`upgrade` / `downgrade`) on an async connection (env.py takes the advisory lock)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            def _command(sync_conn):  # type: ignore[no-untyped-def]
                cfg = alembic_config()
                cfg.attributes["connection"] = sync_conn
                getattr(command, step)(cfg, revision)
            await conn.run_sync(_command)
            await conn.commit()
    finally:
        await engine.dispose()


async def upgrade(database_url: str, revision: str = "heads") -> None:
    await _run(database_url, "upgrade", revision)


async def downgrade(database_url: str, revision: str = "base") -> None:
    await _run(database_url, "downgrade", revision)


def upgrade_sync(database_url: str, revision: str = "heads") -> None:
    asyncio.run(upgrade(database_url, revision))


async def autogenerate(message: str, rev_id: str, admin_url: str) -> None:
    """Developer tool: create a scratch database, upgrade it to head, autogenerate the next revision, drop it.

        python -m core.migrate "assets" 0003
    """
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"rwa_autogen_{uuid.uuid4().hex[:8]}"
    dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            def _gen(sync_conn):  # type: ignore[no-untyped-def]
                cfg = alembic_config()
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "heads")
                command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
            await conn.run_sync(_gen)
            await conn.commit()
        await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    import os
    import sys

    asyncio.run(autogenerate(sys.argv[1], sys.argv[2],
                             os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")))
