"""Async SQLAlchemy engine and session factory shared by the API, the indexer and the workers."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core import tracing

SessionFactory = async_sessionmaker[AsyncSession]


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # no pre-ping: it costs a round trip per checkout; stale connections are recycled and errors surface
        pool_recycle=1800,
        # asyncpg caches prepared statements per connection; keep it, it is most of the speed.
        connect_args={"server_settings": {"application_name": "stablerwa"}},
    )
    tracing.instrument_engine(engine)  # statement spans when tracing is on (core/tracing.py); else nothing
    return engine


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def create_read_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions for GraphQL queries: autocommit, so a read costs no BEGIN/ROLLBACK round trips."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False, autoflush=False
    )


def sync_url(database_url: str) -> str:
    """The same database for sync drivers (alembic autogenerate comparisons, psycopg2 tools)."""
    return database_url.replace("+asyncpg", "+psycopg2")


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE/DELETE (or a text() DML) matched. session.execute returns a CursorResult for those, but
    SQLAlchemy's annotations type every session.execute as Result, which has no rowcount."""
    return cast(CursorResult[Any], result).rowcount
