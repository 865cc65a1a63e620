"""A rollback leaves holdings as if the rolled-back blocks had never been indexed: no row for a holder whose
only transfer went, updated_block back to the newest surviving event (transfer or freeze) of each holder."""

from __future__ import annotations

import asyncio

from eth_utils import to_checksum_address

from chains.anvil import AnvilNode
from chains.deploy import transact
from core.settings import Settings
from indexer.service import run_indexer
from tests.indexer.conftest import (
    TEST_CONFIG,
    add_tokens,
    clone_db,
    deploy,
    drop_db,
    table_rows,
    transfer_request,
    wait_at_head,
)
from tests.indexer.scenario import E18, run_scenario
from tests.indexer.test_reorg import ready_for_transfers

HOLDINGS = "SELECT token_address, holder, balance, frozen_amount, frozen, updated_block FROM holdings ORDER BY 1, 2"


async def _index_to_head(settings: Settings, db: str, node: AnvilNode) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_indexer(settings.model_copy(update={"database_url": db}), [1], stop=stop, config=TEST_CONFIG)
    )
    try:
        await wait_at_head(db, 1, node, task=task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_rollback_leaves_no_orphan_row_and_no_stale_updated_block(
    node: AnvilNode, settings: Settings, idx_db: str, indexer_template_db: str
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    w = await run_scenario(d)
    await ready_for_transfers(d, w)
    token, registry, stable = d.stack.token, d.stack.registry, d.stack.stablecoin
    bob, carol, dave, frank = w["bob"], w["carol"], w["dave"], d.accounts[6]
    await transact(registry.functions.registerIdentity(frank, to_checksum_address(f"0x{0x1DF01:040x}"), 250), d.agent)
    await transact(token.functions.transfer(dave, E18), bob)
    kept_block = node.block_number()  # bob's and dave's newest surviving event
    # the two blocks the reorg drops: frank's only transfer, and carol unfrozen (a holding-state event)
    await transact(token.functions.transfer(frank, 2 * E18), bob)
    await transact(token.functions.setAddressFrozen(carol, False), d.agent)

    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_at_head(idx_db, 1, node, task=task)
        before = {(r[0], r[1]): r for r in await table_rows(idx_db, HOLDINGS)}
        assert before[(token.address, frank)][2] == 2 * E18
        assert before[(token.address, bob)][5] == kept_block + 1
        assert before[(token.address, carol)][5] == kept_block + 2 and not before[(token.address, carol)][4]
        # the new fork: a stablecoin payment that involves none of them, in the last block
        node.reorg(2, [(transfer_request(d.agent, stable.address, w["alice"], 1), 1)])
        await wait_at_head(idx_db, 1, node, task=task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)

    after = {(r[0], r[1]): r for r in await table_rows(idx_db, HOLDINGS)}
    assert (token.address, frank) not in after  # its only transfer was rolled back
    assert after[(token.address, bob)][5] == kept_block
    assert after[(token.address, dave)][5] == kept_block
    carol_row = after[(token.address, carol)]
    assert carol_row[4] is True  # frozen again: the unfreeze is gone
    newest_carol = (
        await table_rows(
            idx_db,
            "SELECT max(b) FROM (SELECT block_number b FROM token_transfers WHERE token_address = $1 AND "
            "(from_address = $2 OR to_address = $2) UNION ALL SELECT block_number FROM chain_events WHERE address = $1 "
            "AND subject = $2) x",
            token.address,
            carol,
        )
    )[0][0]
    assert carol_row[5] == newest_carol < kept_block

    # the whole table equals a fresh index of the surviving chain
    fresh = await clone_db(indexer_template_db)
    try:
        from tests.indexer.conftest import _url

        fresh_url = _url(fresh)
        await add_tokens(fresh_url, 1, d)
        await _index_to_head(settings, fresh_url, node)
        assert await table_rows(fresh_url, HOLDINGS) == await table_rows(idx_db, HOLDINGS)
    finally:
        await drop_db(fresh)
