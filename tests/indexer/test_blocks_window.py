"""The blocks table keeps the unfinalized window as a full parent-hash chain and prunes event-less
blocks once they are finalized and out of the reorg window."""

from __future__ import annotations

import asyncio

from chains.anvil import AnvilNode
from core.settings import Settings
from indexer.follower import PRUNE_EVERY
from indexer.service import run_indexer
from tests.indexer.conftest import TEST_CONFIG, add_tokens, deploy, table_rows, wait_at_head
from tests.indexer.scenario import run_scenario


async def test_window_is_a_hash_chain_and_old_empty_blocks_are_pruned(
    node: AnvilNode, settings: Settings, idx_db: str
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    await run_scenario(d)
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_at_head(idx_db, 1, node, task=task)
        for _ in range(3):  # follow empty blocks in steps, so they are stored as the window moves
            node.mine(PRUNE_EVERY // 2)
            await wait_at_head(idx_db, 1, node, task=task)
        node.mine(1)
        await wait_at_head(idx_db, 1, node, task=task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    head = node.block_number()
    window = await table_rows(
        idx_db, "SELECT number, hash, parent_hash FROM blocks WHERE number > $1 ORDER BY number", head - 9
    )
    assert [r[0] for r in window] == list(range(head - 8, head + 1))
    assert all(b[2] == a[1] for a, b in zip(window, window[1:]))  # parent-hash chain
    (stale,) = (
        await table_rows(
            idx_db,
            "SELECT count(*) FROM blocks b WHERE number < $1 AND NOT EXISTS "
            "(SELECT 1 FROM chain_events e WHERE e.block_number = b.number)",
            head - PRUNE_EVERY - 20,
        )
    )[0]
    assert stale == 0
    (with_events,) = (
        await table_rows(
            idx_db,
            "SELECT count(DISTINCT e.block_number) - count(DISTINCT b.number) FROM chain_events e "
            "LEFT JOIN blocks b ON b.chain_id = e.chain_id AND b.hash = e.block_hash",
        )
    )[0]
    assert with_events == 0  # every block with events is kept
