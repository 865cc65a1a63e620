"""`rwa dev`'s persisted chains after a kill -9 (cli/dev_state.py): the chain restarts from its last state dump,
so it lost its newest blocks, which the index had seen. Reconciling rolls the index back to the highest block the
chain still has and drops the demo token deployed in the lost blocks; the indexer then re-follows the chain and
agrees with it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import asyncpg

from chains.anvil import AnvilNode, free_port
from chains.deploy import deploy_stablecoin, transact
from cli import dev_state
from core.settings import Settings
from indexer.lock import asyncpg_dsn
from indexer.service import run_indexer
from tests.fixtures.db import reloaded
from tests.indexer.conftest import (
    TEST_CONFIG,
    add_tokens,
    assert_matches_chain,
    cursor_block,
    deploy,
    insert_token,
    table_rows,
    wait_at_head,
)
from tests.indexer.scenario import run_scenario


async def _follow(settings: Settings, idx_db: str, node: AnvilNode) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_at_head(idx_db, 1, node, task=task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_kill_9_loses_blocks_and_reconcile_heals_the_index(
    tmp_path: Path, idx_db: str, settings: Settings, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # one port for the three lives of the chain, so the contract objects stay bound to it
    state, port = ["--state", str(dev_state.state_path(tmp_path, 1))], free_port()
    dev_state.state_path(tmp_path, 1).parent.mkdir(parents=True)
    with AnvilNode(1, port=port, extra_args=state) as first:
        d = await deploy(first.url)
        await add_tokens(idx_db, 1, d)
        w = await run_scenario(d)
    assert dev_state.has_state(tmp_path, 1)  # dumped on SIGTERM

    second = AnvilNode(1, port=port, extra_args=state).start()
    try:
        monkeypatch.setenv("RPC_URLS_1", second.url)
        settings = reloaded(settings)  # per-chain URLs are read when settings are built
        kept_head = second.block_number()
        await _follow(settings, idx_db, second)
        # blocks the kill will lose: transfers, and a demo stablecoin deployed and registered
        for _ in range(3):
            await transact(d.stack.stablecoin.functions.transfer(w["bob"], 1), w["alice"])
        lost_coin = await deploy_stablecoin(d.w3, d.agent)
        conn = await asyncpg.connect(asyncpg_dsn(idx_db))
        try:
            await insert_token(conn, 1, lost_coin.address, "STABLECOIN", 6, second.block_number(), None)
        finally:
            await conn.close()
        await _follow(settings, idx_db, second)
        assert await cursor_block(idx_db, 1) > kept_head
    finally:
        os.kill(second.pid, signal.SIGKILL)  # no dump: the state file is the one of the first run
        second.stop()

    with AnvilNode(1, port=port, extra_args=state) as third:
        assert third.block_number() == kept_head
        monkeypatch.setenv("RPC_URLS_1", third.url)
        settings = reloaded(settings)  # per-chain URLs are read when settings are built
        [result] = await dev_state.reconcile(idx_db, {1: third.url}, {1: True}, d.agent)
        assert result.restored and result.rolled_back_to is not None and result.rolled_back_to <= kept_head
        assert not result.reset and result.lost_tokens == ()
        assert await table_rows(idx_db, "SELECT 1 FROM tokens WHERE address = $1", lost_coin.address) == []
        cursor = await table_rows(idx_db, "SELECT indexed_block, indexed_hash FROM indexer_cursors")
        assert cursor[0][1] == third.rpc("eth_getBlockByNumber", hex(cursor[0][0]), False)["hash"]
        # the chain goes on from its restored state; the index follows it and agrees with it
        await transact(d.stack.stablecoin.functions.transfer(w["bob"], 7), w["alice"])
        await _follow(settings, idx_db, third)
        await assert_matches_chain(idx_db, 1, d, extra_holders=(w["alice"], w["bob"]))
