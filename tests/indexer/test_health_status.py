"""A stopped or failing chain reads as such in `rwa index status` (exit 1 for health checks) and GraphQL's
source of truth (indexer_cursors), recorded by the running indexer and cleared by its next good step."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from chains.anvil import AnvilNode
from chains.deploy import transact
from core.settings import Settings
from indexer.errors import ReorgTooDeep
from indexer.lock import asyncpg_dsn
from indexer.reorg import rollback
from indexer.service import run_indexer
from tests.fixtures.db import reloaded
from tests.indexer.cli_helpers import closed_port, run_rwa
from tests.indexer.conftest import TEST_CONFIG, add_tokens, deploy, table_rows, transfer_request, wait_at_head
from tests.indexer.scenario import E18, run_scenario
from tests.indexer.test_reorg import ready_for_transfers

HEALTH = "SELECT stopped_reason, error_count, last_error FROM indexer_cursors WHERE chain_id = 1"


async def _status(idx_db: str, redis_url: str, node: AnvilNode) -> tuple[int, dict]:
    res = await asyncio.to_thread(run_rwa, ["status", "--json", "--chain", "1"], idx_db, redis_url, {1: node.url})
    return res.code, res.json()["chains"][0]


async def test_reorg_too_deep_reads_stopped_until_the_chain_is_healthy_again(
    node: AnvilNode, settings: Settings, idx_db: str, redis_url: str
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    w = await run_scenario(d)
    await ready_for_transfers(d, w)
    for _ in range(14):
        await transact(d.stack.token.functions.transfer(w["dave"], E18), w["bob"])
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    await wait_at_head(idx_db, 1, node, task=task)
    code, row = await _status(idx_db, redis_url, node)
    assert code == 0 and row["state"] == "ok" and row["stopped_reason"] is None
    node.reorg(12, [(transfer_request(w["dave"], d.stack.token.address, w["bob"], E18), 0)])
    with pytest.raises(ReorgTooDeep):
        await asyncio.wait_for(task, 15)

    code, row = await _status(idx_db, redis_url, node)
    assert code == 1, row
    assert row["state"] == "stopped" and row["stopped_reason"].startswith("ReorgTooDeep")
    table = await asyncio.to_thread(run_rwa, ["status", "--chain", "1"], idx_db, redis_url, {1: node.url})
    assert table.code == 1 and "STOPPED" in table.stdout and "stopped: ReorgTooDeep" in table.stdout

    # the operator rolls back below the reorg by hand and restarts: the first good step clears the stop
    ancestor = node.block_number() - 13
    conn = await asyncpg.connect(asyncpg_dsn(idx_db))
    try:
        await rollback(conn, 1, ancestor, node.rpc("eth_getBlockByNumber", hex(ancestor), False)["hash"])
    finally:
        await conn.close()
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_at_head(idx_db, 1, node, task=task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert (await table_rows(idx_db, HEALTH))[0] == (None, 0, None)
    code, row = await _status(idx_db, redis_url, node)
    assert code == 0 and row["state"] == "ok"


async def test_repeated_step_failures_read_failing(
    node: AnvilNode, settings: Settings, idx_db: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    monkeypatch.setenv("RPC_URLS_1", f"http://127.0.0.1:{closed_port()}")  # the indexer's provider is down
    settings = reloaded(settings)  # per-chain URLs are read when settings are built
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not (rows := await table_rows(idx_db, HEALTH)) or rows[0][1] < 3:
            assert asyncio.get_running_loop().time() < deadline and not task.done()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    code, row = await _status(idx_db, redis_url, node)
    assert code == 1 and row["state"] == "failing" and row["error_count"] >= 3
    assert "AllEndpointsFailed" in row["last_error"] or "Rpc" in row["last_error"], row["last_error"]

    monkeypatch.setenv("RPC_URLS_1", node.url)  # provider back: the first good step clears the run
    settings = reloaded(settings)  # per-chain URLs are read when settings are built
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_at_head(idx_db, 1, node, task=task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    code, row = await _status(idx_db, redis_url, node)
    assert code == 0 and row["state"] == "ok" and row["error_count"] == 0
