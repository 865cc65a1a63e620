"""A first backfill builds the event tables' secondary indexes after its rows (indexer/deferred_indexes.py): gone
while it writes, back with the migrations' definitions when it ends, and rebuilt by the next start when it was
killed in between; the rows stay exact throughout."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg

from chains.anvil import AnvilNode
from chains.loadgen import load_recipients, prepare_security_token_load, send_batch_transfers
from core.settings import Settings
from indexer import deferred_indexes
from indexer.lock import asyncpg_dsn
from indexer.service import backfill, run_indexer
from tests.indexer.conftest import (
    TEST_CONFIG,
    Deployed,
    add_tokens,
    assert_matches_chain,
    cursor_block,
    deploy,
    table_rows,
    wait_synced,
)
from tests.indexer.scenario import run_scenario

REPO = Path(__file__).resolve().parents[2]
NAMES = sorted(deferred_indexes.DEFERRED)
_DEFS = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('token_transfers', 'chain_events') ORDER BY 1"


async def index_defs(db_url: str) -> dict[str, str]:
    return {r[0]: r[1] for r in await table_rows(db_url, _DEFS)}


async def with_transfers(node: AnvilNode, idx_db: str, txs: int) -> Deployed:
    d = await deploy(node.url)
    recipients = load_recipients(100)
    await prepare_security_token_load(d.w3, d.stack, d.agent, recipients, supply=10**24)
    await send_batch_transfers(node.url, d.stack.token.address, d.agent, recipients, txs=txs, rpc_batch=1)
    await run_scenario(d)
    await add_tokens(idx_db, 1, d)
    return d


async def test_definitions_are_the_migrations(idx_db: str) -> None:
    defs = await index_defs(idx_db)
    for name, create in deferred_indexes.DEFERRED.items():
        assert defs[name] == create.replace(" IF NOT EXISTS", "")


async def test_first_backfill_writes_without_them_and_rebuilds_them(
    node: AnvilNode, settings: Settings, idx_db: str
) -> None:
    d = await with_transfers(node, idx_db, txs=40)  # 4,000 Transfers, one tx per block
    migrated = await index_defs(idx_db)
    seen: list[set[str]] = []

    async def watch() -> None:  # which indexes exist while the backfill writes rows
        conn = await asyncpg.connect(asyncpg_dsn(idx_db))
        try:
            while True:
                if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM token_transfers)"):
                    seen.append({r[0] for r in await conn.fetch(_DEFS)})
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    watcher = asyncio.create_task(watch())
    config = dataclasses.replace(TEST_CONFIG, batch_events=300, logs_per_call=150)
    try:
        result = await backfill(settings, 1, d.start_block, node.block_number(), config=config)
    finally:
        watcher.cancel()
    assert result.transfers > 4000 and not result.stopped
    assert seen and not set(NAMES) & seen[0]  # the first rows were written without them
    assert await index_defs(idx_db) == migrated  # and they are back, as migrated
    await assert_matches_chain(idx_db, 1, d)

    # a second backfill (rows exist) leaves them alone
    await table_rows(idx_db, "DELETE FROM fetched_intervals")
    conn = await asyncpg.connect(asyncpg_dsn(idx_db))
    try:
        assert not await deferred_indexes.defer(conn)
    finally:
        await conn.close()
    assert await index_defs(idx_db) == migrated


async def test_a_killed_backfill_leaves_exact_rows_and_the_next_start_rebuilds_them(
    node: AnvilNode, settings: Settings, idx_db: str, tmp_path: Path
) -> None:
    d = await with_transfers(node, idx_db, txs=80)
    head = node.block_number()
    migrated = await index_defs(idx_db)
    child = textwrap.dedent(
        f"""
        import asyncio
        from core.settings import Settings
        from indexer.config import IndexerConfig
        from indexer.service import backfill
        config = IndexerConfig(batch_events=200, logs_per_call=100, initial_span=5, finality_depth={{1: 8}})
        asyncio.run(backfill(Settings(DATABASE_URL={idx_db!r}, REDIS_URL=None), 1, {d.start_block}, {head},
                             config=config))
        """
    )
    log = tmp_path / "backfill.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", child], cwd=REPO, env={**os.environ, "RPC_URLS_1": node.url}, stdout=out, stderr=out
        )
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while (await cursor_block(idx_db, 1) or 0) < d.start_block + 20:
            assert proc.poll() is None, log.read_text()
            assert asyncio.get_running_loop().time() < deadline, "the backfill made no progress"
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (await cursor_block(idx_db, 1) or 0) < head, "killed too late: the backfill had finished"
    missing = await index_defs(idx_db)
    assert not set(NAMES) & set(missing)  # the kill left them dropped, the committed rows in place

    # another session deferring them right now (holding the lock): a start does not rebuild them under it
    holder = await asyncpg.connect(asyncpg_dsn(idx_db))
    other = await asyncpg.connect(asyncpg_dsn(idx_db))
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1, $2)", *deferred_indexes.DEFER_LOCK)
        assert await deferred_indexes.restore(other) == []
    finally:
        await holder.close()
        await other.close()

    # the next `rwa index run` rebuilds them when it takes the chain, then catches up
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_synced(idx_db, {1: node}, timeout=60, task=task)
    finally:
        stop.set()
        await task
    assert await index_defs(idx_db) == migrated
    await assert_matches_chain(idx_db, 1, d)

    # the same holds for the next `rwa index backfill`
    await table_rows(idx_db, "DROP INDEX " + ", ".join(NAMES))
    again = await backfill(settings, 1, d.start_block, head, config=TEST_CONFIG)
    assert again.events == 0
    assert await index_defs(idx_db) == migrated
    await assert_matches_chain(idx_db, 1, d)


async def test_restore_builds_on_two_connections_or_falls_back_to_one(idx_db: str) -> None:
    """The holder-keyed pair is built on a second connection while the caller's builds the rest; a second
    connection that cannot be opened leaves every build to the caller's. Either way all come back as migrated."""
    migrated = await index_defs(idx_db)
    conn = await asyncpg.connect(asyncpg_dsn(idx_db))
    opened: list[asyncpg.Connection] = []

    async def second() -> asyncpg.Connection:
        c = await asyncpg.connect(asyncpg_dsn(idx_db))
        opened.append(c)
        return c

    async def refused() -> asyncpg.Connection:
        raise OSError("no second connection")

    try:
        for connect in (second, refused):
            await conn.execute("DROP INDEX " + ", ".join(NAMES))
            assert await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *deferred_indexes.DEFER_LOCK)
            built = await deferred_indexes.restore(conn, deferred_here=True, connect=connect)
            assert sorted(built) == NAMES
            assert await index_defs(idx_db) == migrated
            # the lock is released after: another session may defer again
            assert await conn.fetchval(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())"
            )
        assert len(opened) == 1 and opened[0].is_closed()
    finally:
        await conn.close()
