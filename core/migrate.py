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


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Run `alembic upgrade` on an async connection (env.py takes the advisory lock)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            def _upgrade(sync_conn):  # type: ignore[no-untyped-def]
                cfg = alembic_config()
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, revision)
            await conn.run_sync(_upgrade)
            await conn.commit()
    finally:
        await engine.dispose()


def upgrade_sync(database_url: str, revision: str = "head") -> None:
    asyncio.run(upgrade(database_url, revision))
