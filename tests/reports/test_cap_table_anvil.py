"""The cap table at every past block equals `balanceOf`/`totalSupply` read from the chain at that block.

A token on anvil: identities registered, mints, transfers, a forced transfer and a burn at distinct blocks (a
minute apart); the real indexer indexes it; checkpoints are written every two transfers; then for every block from
the first mint to the head the cap table, by each strategy (FORWARD, REVERSE, CHECKPOINT, automatic), is compared
with the contract's views at that block, and at each block's time the table of that block comes back.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from eth_utils import to_checksum_address
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from chains.anvil import AnvilNode
from chains.deploy import transact
from core.settings import Settings
from indexer.service import run_indexer
from resolvers.reports.cap_table import Strategy, cap_table
from resolvers.reports.checkpoints import write_checkpoints
from resolvers.viewer import Viewer
from tests.indexer.conftest import TEST_CONFIG, add_tokens, deploy, idx_db, indexer_template_db, node, wait_synced  # noqa: F401

E18 = 10**18


@pytest.fixture
def indexer_settings(idx_db: str, node: AnvilNode, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:  # noqa: F811
    monkeypatch.setenv("RPC_URLS_1", node.url)
    return Settings(
        DATABASE_URL=idx_db,
        REDIS_URL=redis_url,  # type: ignore[call-arg]
        RWA_REDIS_PREFIX=f"rwa-test:{uuid.uuid4().hex[:8]}:",
    )


async def test_cap_table_matches_the_chain_at_every_block(
    node: AnvilNode,
    idx_db: str,  # noqa: F811
    indexer_settings: Settings,
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d, stable=False)
    token, registry, agent = d.stack.token, d.stack.registry, d.agent
    alice, bob, carol, dave = d.accounts[1:5]
    for i, w in enumerate((alice, bob, carol, dave)):
        await transact(registry.functions.registerIdentity(w, to_checksum_address(f"0x{0x1D000 + i:040x}"), 250), agent)
    steps = [
        (token.functions.mint(alice, 1000 * E18), agent),
        (token.functions.mint(bob, 250 * E18), agent),
        (token.functions.transfer(carol, 100 * E18), alice),
        (token.functions.transfer(dave, 250 * E18), bob),  # Bob leaves
        (token.functions.forcedTransfer(carol, alice, 40 * E18), agent),
        (token.functions.burn(dave, 50 * E18), agent),
        (token.functions.transfer(bob, 1), dave),  # Bob comes back with one unit
    ]
    moved_at: list[int] = []
    for fn, sender in steps:
        node.rpc("evm_increaseTime", 60)  # a distinct block time for each step (the chain runs ahead of the clock)
        receipt = await transact(fn, sender)
        moved_at.append(receipt["blockNumber"])
    node.mine(12)  # every step final (finalized = head - 8): checkpoints may cover all of them
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(indexer_settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_synced(idx_db, {1: node}, task=task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)

    head = node.block_number()
    wallets = (alice, bob, carol, dave)
    viewer = Viewer(user_id=uuid.uuid4(), roles=frozenset({"COMPLIANCE"}))
    engine = create_async_engine(idx_db)
    try:
        async with AsyncSession(engine) as session:
            written = await write_checkpoints(session, every=2)  # a checkpoint every two transfers
            assert len(written) == len(steps) // 2
            checked = 0
            for block in range(moved_at[0] - 1, head + 1):  # from the block before the first mint
                expected = {}
                for w in wallets:
                    balance = await token.functions.balanceOf(w).call(block_identifier=block)
                    if balance:
                        expected[w] = balance
                supply = await token.functions.totalSupply().call(block_identifier=block)
                for strategy in (Strategy.FORWARD, Strategy.REVERSE, Strategy.CHECKPOINT, None):
                    table = await cap_table(
                        session, viewer, chain_id=1, token=token.address, at_block=block, strategy=strategy
                    )
                    assert {r.holder: r.balance for r in table.rows} == expected, (block, strategy)
                    assert table.total_supply == supply and table.at_block == block
                    assert sum(r.percent for r in table.rows) == pytest.approx(100 if supply else 0, abs=1e-5)
                checked += 1
            assert checked >= len(steps) + 3
            # at a time: the last block at or before it (the blocks mined after the last step share its second)
            times = {b: await node_block_time(node, b) for b in range(moved_at[0], head + 1)}
            for block in moved_at:
                when = times[block] + timedelta(seconds=30)
                expected_block = max(b for b, t in times.items() if t <= when)
                at = await cap_table(
                    session, viewer, chain_id=1, token=token.address, at_time=when, now=when + timedelta(days=1)
                )
                assert at.at_block == expected_block and at.at_block_time == times[expected_block]
                by_block = await cap_table(session, viewer, chain_id=1, token=token.address, at_block=block)
                assert at.rows == by_block.rows
            latest = await cap_table(session, viewer, chain_id=1, token=token.address)
            assert latest.at_block == head and latest.strategy is Strategy.REVERSE
            assert {r.holder for r in latest.rows} == {alice, bob, carol, dave}
    finally:
        await engine.dispose()


async def node_block_time(node: AnvilNode, block: int) -> datetime:
    raw = node.rpc("eth_getBlockByNumber", hex(block), False)
    return datetime.fromtimestamp(int(raw["timestamp"], 16), tz=UTC)
