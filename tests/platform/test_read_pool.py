"""The read pool (core/services.py FairReadPool) keeps a connection checked out between statements, and gives it
back to asyncpg's pool whenever asyncpg has work to do on it: after a statement that raised (a cancellation
included), after HOLD_STATEMENTS statements, when its socket closed, and when the pool closes (which must not wait
for the connections it keeps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.dsn import asyncpg_dsn
from core.services import FairReadPool

WAIT_S = 20.0  # an upper bound for a hang, not a timing assertion


@pytest.fixture
async def read_pool(database_url: str) -> AsyncIterator[FairReadPool]:
    pool = FairReadPool(await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=1, max_size=3), 3)
    try:
        yield pool
    finally:
        await asyncio.wait_for(pool.close(), WAIT_S)


def _checked_out(pool: FairReadPool) -> int:
    return pool.pool.get_size() - pool.pool.get_idle_size()


async def test_answers_and_keeps_one_connection_for_sequential_statements(read_pool: FairReadPool) -> None:
    for i in range(20):
        assert (await read_pool.fetchrow("SELECT $1::int AS n", i))["n"] == i
        assert [r["n"] for r in await read_pool.fetch("SELECT generate_series(1, $1) AS n", 3)] == [1, 2, 3]
    assert _checked_out(read_pool) == 1
    backends = {(await read_pool.fetchrow("SELECT pg_backend_pid() AS p"))["p"] for _ in range(5)}
    assert len(backends) == 1


async def test_concurrent_statements_never_exceed_the_pool(read_pool: FairReadPool) -> None:
    rows = await asyncio.gather(*(read_pool.fetchrow("SELECT $1::int AS n, pg_sleep(0.01)", i) for i in range(30)))
    assert [r["n"] for r in rows] == list(range(30))
    assert _checked_out(read_pool) <= 3


async def test_a_failing_statement_gives_its_connection_back(read_pool: FairReadPool) -> None:
    await read_pool.fetchrow("SELECT 1")
    assert _checked_out(read_pool) == 1
    with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
        await read_pool.fetchrow("SELECT 1 / $1::int", 0)
    assert _checked_out(read_pool) == 0
    assert (await read_pool.fetchrow("SELECT 2 AS n"))["n"] == 2


async def test_a_cancelled_statement_gives_its_connection_back(read_pool: FairReadPool) -> None:
    task = asyncio.create_task(read_pool.fetchrow("SELECT pg_sleep(10)"))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT_S)
    assert _checked_out(read_pool) == 0
    assert (await asyncio.wait_for(read_pool.fetchrow("SELECT 3 AS n"), WAIT_S))["n"] == 3


async def test_a_connection_goes_back_after_hold_statements(
    read_pool: FairReadPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FairReadPool, "HOLD_STATEMENTS", 3)
    for _ in range(3):
        await read_pool.fetchrow("SELECT 1")
    assert _checked_out(read_pool) == 0


async def test_a_kept_connection_the_server_closed_is_replaced(read_pool: FairReadPool, database_url: str) -> None:
    pid = (await read_pool.fetchrow("SELECT pg_backend_pid() AS p"))["p"]
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    for _ in range(100):  # the client notices the closed socket on its own: wait for it (bounded)
        if read_pool._idle[0][0]._con is None or read_pool._idle[0][0]._con.is_closed():
            break
        await asyncio.sleep(0.05)
    assert (await read_pool.fetchrow("SELECT pg_backend_pid() AS p"))["p"] != pid


async def test_closing_does_not_wait_for_kept_connections(read_pool: FairReadPool) -> None:
    await asyncio.gather(*(read_pool.fetchrow("SELECT pg_sleep(0.01)") for _ in range(6)))
    running = asyncio.create_task(read_pool.fetchrow("SELECT 5 AS n, pg_sleep(0.3)"))
    await asyncio.sleep(0.1)
    await asyncio.wait_for(read_pool.close(), WAIT_S)  # waits for the running statement, which gives its back
    assert (await running)["n"] == 5
