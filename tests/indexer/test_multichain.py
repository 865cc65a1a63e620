"""Ethereum, Polygon and BSC (three anvil nodes) indexed concurrently by one process, with random
reorgs of depth 1-5 on each chain while following the head; state matches every chain after each."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from chains.anvil import AnvilNode, start_local_chains, stop_nodes
from chains.deploy import transact
from core.settings import Settings
from indexer.service import run_indexer
from tests.indexer.conftest import (
    TEST_CONFIG,
    Deployed,
    add_tokens,
    assert_matches_chain,
    deploy,
    table_rows,
    transfer_request,
    wait_at_head,
)
from tests.indexer.scenario import E18, run_scenario


@pytest.fixture
def three_nodes() -> Iterator[dict[int, AnvilNode]]:
    nodes = start_local_chains((1, 137, 56))
    try:
        yield nodes
    finally:
        stop_nodes(nodes.values())


async def _prepare(n: AnvilNode, db: str) -> tuple[Deployed, dict[str, str]]:
    d = await deploy(n.url)
    await add_tokens(db, n.chain_id, d)
    w = await run_scenario(d)
    await transact(d.stack.token.functions.unpause(), d.agent)
    await transact(d.stack.token.functions.setAddressFrozen(w["dave"], False), d.agent)
    await transact(d.stack.token.functions.mint(w["bob"], 1000 * E18), d.agent)
    return d, w


async def test_three_chains_concurrently_with_random_reorgs(
    three_nodes: dict[int, AnvilNode], idx_db: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cid, n in three_nodes.items():
        monkeypatch.setenv(f"RPC_URLS_{cid}", n.url)
    settings = Settings(DATABASE_URL=idx_db, REDIS_URL=redis_url, RWA_REDIS_PREFIX="rwa-test:mc:")  # type: ignore[call-arg]
    prepared = await asyncio.gather(*(_prepare(n, idx_db) for n in three_nodes.values()))
    stacks = dict(zip(three_nodes, prepared))
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, None, stop=stop, config=TEST_CONFIG))
    rng = random.Random(3)
    try:
        await asyncio.gather(*(wait_at_head(idx_db, cid, n, task=task) for cid, n in three_nodes.items()))
        for cid, (d, w) in stacks.items():
            await assert_matches_chain(idx_db, cid, d, extra_holders=tuple(w.values()))

        async def churn(cid: int) -> None:
            n, (d, w) = three_nodes[cid], stacks[cid]
            for _ in range(2):
                depth = rng.randint(1, 5)
                for _ in range(depth + 1):
                    await transact(d.stack.token.functions.transfer(w["dave"], E18), w["bob"])
                await wait_at_head(idx_db, cid, n, task=task)
                n.reorg(depth, [(transfer_request(w["dave"], d.stack.token.address, w["bob"], 2 * E18), depth - 1)])
                await wait_at_head(idx_db, cid, n, task=task)
                await assert_matches_chain(idx_db, cid, d, extra_holders=tuple(w.values()))

        await asyncio.gather(*(churn(cid) for cid in three_nodes))
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    per_chain = dict(await table_rows(idx_db, "SELECT chain_id, count(*) FROM chain_events GROUP BY chain_id"))
    assert set(per_chain) == {1, 137, 56} and min(per_chain.values()) > 20
