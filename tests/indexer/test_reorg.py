"""Reorgs while following the head: rolled back in one transaction, re-fetched, published on Redis;
a reorg deeper than the finality window stops the chain with ReorgTooDeep and touches nothing."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from chains.anvil import AnvilNode
from chains.deploy import transact
from core.settings import Settings
from indexer.errors import ReorgTooDeep
from indexer.reorg import reorg_channel
from indexer.service import run_indexer
from tests.indexer.conftest import (
    TEST_CONFIG,
    add_tokens,
    assert_matches_chain,
    deploy,
    snapshot,
    table_rows,
    transfer_request,
    wait_at_head,
)
from tests.indexer.scenario import E18, run_scenario


async def ready_for_transfers(d, w) -> None:  # type: ignore[no-untyped-def]
    """After the scenario: unpause, unfreeze dave, give bob tokens to move around."""
    await transact(d.stack.token.functions.unpause(), d.agent)
    await transact(d.stack.token.functions.setAddressFrozen(w["dave"], False), d.agent)
    await transact(d.stack.token.functions.mint(w["bob"], 1000 * E18), d.agent)


DROPPED_ROWS_SQL = """
SELECT (SELECT count(*) FROM chain_events WHERE block_hash = ANY($1::text[]))
     + (SELECT count(*) FROM token_transfers WHERE block_hash = ANY($1::text[]))
     + (SELECT count(*) FROM blocks WHERE hash = ANY($1::text[]))
"""


async def test_reorgs_of_depth_1_to_5_while_following(
    node: AnvilNode, settings: Settings, idx_db: str, redis_url: str
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    w = await run_scenario(d)
    token, alice, bob, dave = d.stack.token.address, w["alice"], w["bob"], w["dave"]
    await ready_for_transfers(d, w)
    redis = Redis.from_url(redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(reorg_channel(settings.redis_prefix, 1))
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        for depth in range(1, 6):
            # blocks the reorg will drop: bob pays dave (one transfer per block)
            for _ in range(depth + 1):
                await transact(d.stack.token.functions.transfer(dave, E18), bob)
            await wait_at_head(idx_db, 1, node, task=task)
            head = node.block_number()
            dropped = [
                node.rpc("eth_getBlockByNumber", hex(n), False)["hash"] for n in range(head - depth + 1, head + 1)
            ]
            assert (await table_rows(idx_db, DROPPED_ROWS_SQL, dropped))[0][0] > 0
            # replacement blocks: dave pays bob back instead, in the last new block
            node.reorg(depth, [(transfer_request(dave, token, bob, 3 * E18), depth - 1)])
            await wait_at_head(idx_db, 1, node, task=task)
            assert (await table_rows(idx_db, DROPPED_ROWS_SQL, dropped))[0][0] == 0
            await assert_matches_chain(idx_db, 1, d, extra_holders=(alice, bob, dave))
            msg = None
            for _ in range(50):
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if msg:
                    break
            assert msg is not None, "no reorg notice on Redis"
            notice = json.loads(msg["data"])
            assert notice["chainId"] == 1 and notice["depth"] >= depth
            assert notice["fromBlock"] == notice["commonAncestor"] + 1 <= head - depth + 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await pubsub.aclose()
        await redis.aclose()


async def test_reorg_deeper_than_window_stops_the_chain_untouched(
    node: AnvilNode, settings: Settings, idx_db: str
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    w = await run_scenario(d)
    await ready_for_transfers(d, w)
    for _ in range(14):
        await transact(d.stack.token.functions.transfer(w["dave"], E18), w["bob"])
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_at_head(idx_db, 1, node, task=task)
        before = await snapshot(idx_db)
        # 12 > the 8-block window (and below anvil's finalized block)
        node.reorg(12, [(transfer_request(w["dave"], d.stack.token.address, w["bob"], E18), 0)])
        with pytest.raises(ReorgTooDeep):
            await asyncio.wait_for(task, 15)
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 10)
    after = await snapshot(idx_db)
    assert after == before
