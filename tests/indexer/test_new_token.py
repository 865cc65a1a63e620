"""A token inserted while the indexer runs is picked up without a restart, with its history."""

from __future__ import annotations

import asyncio

import asyncpg

from chains.anvil import AnvilNode
from chains.deploy import transact
from core.settings import Settings
from indexer.lock import asyncpg_dsn
from indexer.service import run_indexer
from tests.indexer.conftest import (
    TEST_CONFIG,
    add_tokens,
    assert_matches_chain,
    deploy,
    insert_token,
    table_rows,
    wait_synced,
)
from tests.indexer.scenario import E18, run_scenario


async def test_token_added_while_running_is_backfilled(node: AnvilNode, settings: Settings, idx_db: str) -> None:
    d1 = await deploy(node.url)
    await add_tokens(idx_db, 1, d1)
    await run_scenario(d1)
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_synced(idx_db, {1: node}, task=task)
        # a second stack with history the indexer has not seen (its blocks are below the cursor)
        d2 = await deploy(node.url)
        await run_scenario(d2)
        node.mine(20)  # its history is now finalized and far below the head
        await wait_synced(idx_db, {1: node}, task=task)
        assert not await table_rows(
            idx_db, "SELECT 1 FROM token_transfers WHERE token_address = $1", d2.stack.token.address
        )
        conn = await asyncpg.connect(asyncpg_dsn(idx_db))
        try:
            await insert_token(
                conn, 1, d2.stack.token.address, "SECURITY", 18, d2.start_block, d2.stack.registry.address
            )
        finally:
            await conn.close()
        # and activity after the insert, while its backfill may be running
        bob, dave = d2.accounts[2], d2.accounts[4]
        await transact(d2.stack.token.functions.unpause(), d2.agent)
        await transact(d2.stack.token.functions.mint(bob, 7 * E18), d2.agent)
        await wait_synced(idx_db, {1: node}, task=task)
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            try:
                await assert_matches_chain(idx_db, 1, d2, extra_holders=(bob, dave))
                break
            except AssertionError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        await assert_matches_chain(idx_db, 1, d1)
        (n,) = (
            await table_rows(
                idx_db, "SELECT count(*) FROM token_transfers WHERE token_address = $1", d2.stack.token.address
            )
        )[0]
        assert n == 8  # the scenario's 7 token Transfers (mints, transfers, forced, recovery, burn) + the new mint
        intervals = await table_rows(
            idx_db, "SELECT from_block, to_block FROM fetched_intervals WHERE address = $1", d2.stack.token.address
        )
        assert len(intervals) == 1 and intervals[0][0] == d2.start_block
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
