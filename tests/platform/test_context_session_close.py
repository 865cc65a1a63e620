"""An operation's database slot (server/context.py) gives its session's connection back when the operation ends; a
session the operation opened but never used (placeOrder's, whose order the market's sequencer places on a
connection of its own) holds no connection and is simply dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from server.context import DbSlot, _untouched


@pytest.fixture
async def pooled(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=2, max_overflow=0)
    yield engine
    await engine.dispose()


async def test_a_used_session_gives_its_connection_back_and_an_unused_one_holds_none(pooled: AsyncEngine) -> None:
    factory = async_sessionmaker(pooled, expire_on_commit=False)
    pool = pooled.pool
    for statements in ([], ["SELECT 1"], ["SELECT 1", "COMMIT"]):
        slot = DbSlot(owner=None)  # type: ignore[arg-type]  # closing reads no context
        session = slot.session = factory()
        for statement in statements:
            if statement == "COMMIT":
                await session.commit()
            else:
                await session.execute(text(statement))
        assert _untouched(session) is (statements in ([], ["SELECT 1", "COMMIT"]))
        await slot.close()
        assert slot.session is None and slot.closed
        assert pool.checkedout() == 0, statements  # type: ignore[attr-defined]  # QueuePool's


async def test_a_session_holding_objects_or_a_transaction_is_closed(pooled: AsyncEngine) -> None:
    factory = async_sessionmaker(pooled, expire_on_commit=False)
    session = factory()
    await session.begin()
    assert not _untouched(session)
    slot = DbSlot(owner=None)  # type: ignore[arg-type]
    slot.session = session
    await slot.close()
    assert not session.in_transaction() and pooled.pool.checkedout() == 0  # type: ignore[attr-defined]
