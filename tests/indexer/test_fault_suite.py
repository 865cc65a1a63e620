"""Issue 13's fault suite (items 1-3), on real anvil behind a fault-injecting proxy (bench/rpc_fault_proxy.py):

- a reorg landing between eth_getLogs and the block fetch loses nothing (it lost the new block's Transfer);
- one null answer for the cursor's block while catching up is not a reorg (it stopped the chain with
  ReorgTooDeep);
- a backfill through a provider failing 20% of its requests in every way finishes and verifies;
- `rwa index run` starts and indexes with a broken first provider and one serving the wrong chain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import time
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from bench.rpc_fault_proxy import FaultProxy
from chains import anvil as anvil_rpc
from chains.anvil import AnvilNode
from chains.deploy import transact
from chains.rpc import RpcClient
from core.settings import Settings
from indexer.service import backfill, run_indexer
from indexer.verify import verify_token
from tests.fixtures.db import reloaded
from tests.indexer.cli_helpers import REPO, RWA, rwa_env
from tests.indexer.conftest import (
    TEST_CONFIG,
    Deployed,
    add_tokens,
    assert_matches_chain,
    cursor_block,
    deploy,
    table_rows,
    transfer_request,
    wait_at_head,
)
from tests.indexer.scenario import E18, run_scenario


async def ready(d: Deployed) -> dict[str, str]:
    """The scenario, then transfers allowed again (unpaused, dave unfrozen) so reorgs can carry Transfers."""
    w = await run_scenario(d)
    await transact(d.stack.token.functions.unpause(), d.agent)
    await transact(d.stack.token.functions.setAddressFrozen(w["dave"], False), d.agent)
    await transact(d.stack.token.functions.mint(w["bob"], 1000 * E18), d.agent)
    return w


async def verify_ok(db_url: str, node: AnvilNode, d: Deployed) -> None:
    """`rwa index verify`'s check for both tokens, at the indexed block, through a clean client."""
    engine = create_async_engine(db_url)
    try:
        async with RpcClient([node.url], chain_id=1) as rpc:
            for token in (d.stack.token.address, d.stack.stablecoin.address):
                report = await verify_token(engine, rpc, 1, token)
                assert report.ok, (token, report.mismatches, report.total_supply, report.indexed_sum)
    finally:
        await engine.dispose()


async def stop_indexer(stop: asyncio.Event, task: asyncio.Task[Any]) -> None:
    stop.set()
    await asyncio.wait_for(task, 20)


@pytest.mark.parametrize(("depth", "after"), [(1, "eth_getLogs"), (2, "eth_getLogs"), (1, "eth_getBlockByNumber")])
async def test_a_reorg_between_get_logs_and_the_block_fetch_loses_nothing(
    node: AnvilNode, settings: Settings, idx_db: str, monkeypatch: pytest.MonkeyPatch, depth: int, after: str
) -> None:
    """The reorg lands right after the node answered ``after`` (eth_getLogs: the race of the issue; a block
    read: any other point of a step, e.g. between the headers and the by-hash log reads)."""
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    w = await ready(d)
    replacement = transfer_request(w["dave"], d.stack.token.address, w["bob"], 7 * E18)
    armed, fired = {"on": False}, asyncio.Event()

    async def reorg_after_get_logs(payload: Any, reply: Any) -> None:
        methods = [i["method"] for i in payload] if isinstance(payload, list) else [payload["method"]]
        if armed["on"] and after in methods:
            armed["on"] = False
            # the reply still carries the old fork's (empty) logs; the next read sees the new fork, whose
            # last block holds a Transfer
            await anvil_rpc.reorg(node.url, depth, [(replacement, depth - 1)])
            fired.set()

    proxy = await FaultProxy(node.url, on_forwarded=reorg_after_get_logs).start()
    monkeypatch.setenv("RPC_URLS_1", proxy.url)
    settings = reloaded(settings)  # per-chain URLs are read when settings are built
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_at_head(idx_db, 1, node, task=task)
        armed["on"] = True
        node.mine(depth)  # empty blocks on the old fork (a sync call: no request is served meanwhile)
        await asyncio.wait_for(fired.wait(), 20)
        await wait_at_head(idx_db, 1, node, task=task)
        head = node.rpc("eth_getBlockByNumber", "latest", False)
        moved = await table_rows(
            idx_db, "SELECT from_address, to_address, value FROM token_transfers WHERE block_hash = $1", head["hash"]
        )
        assert moved == [(w["dave"], w["bob"], 7 * E18)]
    finally:
        await stop_indexer(stop, task)
        await proxy.stop()
    await assert_matches_chain(idx_db, 1, d, extra_holders=tuple(w.values()))
    await verify_ok(idx_db, node, d)


async def test_one_null_block_while_catching_up_is_not_a_reorg(
    node: AnvilNode, settings: Settings, idx_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    w = await ready(d)
    for _ in range(6):
        await transact(d.stack.token.functions.transfer(w["dave"], E18), w["bob"])
    node.mine(30)  # the node's finalized block is now far above where the index stops
    stopped_at = d.start_block + 12
    await backfill(settings, 1, d.start_block, stopped_at, config=TEST_CONFIG)
    assert await cursor_block(idx_db, 1) == stopped_at
    finalized = int(node.rpc("eth_getBlockByNumber", "finalized", False)["number"], 16)
    assert finalized > stopped_at + 8
    # what a `run` that stopped here would have recorded (the floor of ReorgTooDeep)
    await table_rows(
        idx_db,
        "UPDATE indexer_cursors SET finalized_block = $2, head_block = $3 WHERE chain_id = $1 RETURNING 1",
        1,
        finalized,
        node.block_number(),
    )

    proxy = await FaultProxy(node.url).start()
    proxy.answer_null(1, when=lambda n: n == stopped_at)  # one lagging answer for the cursor's block
    monkeypatch.setenv("RPC_URLS_1", proxy.url)
    settings = reloaded(settings)  # per-chain URLs are read when settings are built
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_at_head(idx_db, 1, node, task=task)
    finally:
        await stop_indexer(stop, task)
        await proxy.stop()
    assert proxy.injected["scheduled_null"] == 1
    await assert_matches_chain(idx_db, 1, d, extra_holders=tuple(w.values()))


async def test_null_blocks_in_the_reorg_window_and_the_ancestor_search_are_retried(
    node: AnvilNode, settings: Settings, idx_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nulls for every kind of block read (cursor, window headers, the ancestor walk after a real reorg)."""
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    w = await ready(d)
    proxy = await FaultProxy(node.url).start()
    monkeypatch.setenv("RPC_URLS_1", proxy.url)
    settings = reloaded(settings)  # per-chain URLs are read when settings are built
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_at_head(idx_db, 1, node, task=task)
        for _ in range(3):
            await transact(d.stack.token.functions.transfer(w["dave"], E18), w["bob"])
        head = node.block_number()
        proxy.answer_null(4, when=lambda n: n > head - 6)
        node.reorg(2, [(transfer_request(w["dave"], d.stack.token.address, w["bob"], 2 * E18), 1)])
        await wait_at_head(idx_db, 1, node, task=task, timeout=40)
    finally:
        await stop_indexer(stop, task)
        await proxy.stop()
    assert proxy.injected["scheduled_null"] >= 1
    await assert_matches_chain(idx_db, 1, d, extra_holders=tuple(w.values()))


async def test_backfill_through_a_provider_failing_20_percent_finishes_and_verifies(
    node: AnvilNode, settings: Settings, idx_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chains.loadgen import load_recipients, prepare_security_token_load, send_batch_transfers

    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    w = await ready(d)
    recipients = load_recipients(40)
    await prepare_security_token_load(d.w3, d.stack, d.agent, recipients, supply=10**24)
    # 80 blocks of transfers: the backfill batches its calls, so 40 made only ~35 HTTP requests and, at 20%, 7
    # faults in one run (fewer than the 8 asserted below); each block adds requests, so faults
    await send_batch_transfers(node.url, d.stack.token.address, d.agent, recipients, txs=80, rpc_batch=1)
    node.mine(10)  # every event finalized: a backfill (to the finalized block) covers them all
    proxy = await FaultProxy(node.url, fault_rate=0.2, timeout_s=1.0, seed=2026).start()
    monkeypatch.setenv("RPC_URLS_1", proxy.url)
    settings = reloaded(settings)  # per-chain URLs are read when settings are built
    # small batches and spans: many requests, so every kind of fault lands somewhere
    config = dataclasses.replace(TEST_CONFIG, rpc_timeout_s=0.6, batch_events=40, logs_per_call=20, initial_span=1)
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(backfill(settings, 1, d.start_block, None, config=config), 300)
    finally:
        await proxy.stop()
    assert not result.stopped and result.to_block == node.block_number() - 8
    assert await cursor_block(idx_db, 1) == result.to_block
    assert sum(proxy.injected.values()) >= 8 and len(proxy.injected) >= 5, (proxy.injected, proxy.requests)
    await assert_matches_chain(idx_db, 1, d, extra_holders=(*recipients[:10], *w.values()))
    await verify_ok(idx_db, node, d)
    print(
        f"backfill under 20% faults: {time.monotonic() - started:.1f}s, {sum(proxy.requests.values())} calls, "
        f"injected {dict(proxy.injected)}"
    )


async def test_run_starts_with_a_broken_first_provider_and_drops_a_wrong_chain_one(
    idx_db: str, node: AnvilNode, redis_url: str
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d, security=False, stable=True)
    await transact(d.stack.stablecoin.functions.mint(d.agent, 10**9), d.agent)
    broken = await FaultProxy(node.url, fault_rate=1.0, kinds=("html200", "401", "internal_error", "truncated")).start()
    polygon = await FaultProxy(node.url, chain_id=137).start()  # a Polygon URL configured for Ethereum
    urls = f"{broken.url},{polygon.url},{node.url}"
    env = rwa_env(idx_db, redis_url, {1: urls}, {"RWA_INDEXER_POLL_S": "0.1", "RWA_FINALITY_DEPTH_1": "8"})
    proc = subprocess.Popen(
        [RWA, "index", "run", "--chain", "ethereum", "--metrics-port", "0"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        head = node.block_number()
        deadline = time.monotonic() + 60
        while (await cursor_block(idx_db, 1) or -1) < head:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "indexer did not reach the head"
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        await broken.stop()
        await polygon.stop()
    assert proc.returncode == 0, err
    assert "serves chain 137, not 1: dropped from the rotation" in err, err
    assert f"127.0.0.1:{polygon.port}" in err and "Traceback" not in err
    assert sum(broken.injected.values()) >= 1
    rows = await table_rows(
        idx_db, "SELECT count(*) FROM token_transfers WHERE token_address = $1", d.stack.stablecoin.address
    )
    assert rows[0][0] >= 1


async def test_self_check_heals_stored_blocks_that_differ_from_the_node(
    node: AnvilNode, settings: Settings, idx_db: str
) -> None:
    """A stored window block that the node does not serve (below the cursor: its events would be silently
    wrong; above it: every batch was refused with ReorgDetected, retried at once forever) is found by the
    self-check, rolled back and re-indexed."""
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    w = await ready(d)
    config = dataclasses.replace(TEST_CONFIG, self_check_interval_s=0.3)
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=config))
    try:
        await wait_at_head(idx_db, 1, node, task=task)
        head = node.block_number()
        bogus = "0x" + "de" * 32
        # below the cursor: a block from "another fork", and its Transfer gone with it
        await table_rows(
            idx_db, "UPDATE blocks SET hash = $3 WHERE chain_id = $1 AND number = $2 RETURNING 1", 1, head - 2, bogus
        )
        # above the cursor: what a backfill from another fork would have left
        await table_rows(
            idx_db,
            "INSERT INTO blocks (chain_id, number, hash, parent_hash, timestamp) "
            "VALUES ($1, $2, $3, $3, now()) RETURNING 1",
            1,
            head + 2,
            "0x" + "ad" * 32,
        )
        for _ in range(3):
            await transact(d.stack.token.functions.transfer(w["dave"], E18), w["bob"])
        await wait_at_head(idx_db, 1, node, task=task, timeout=40)
        stored = dict(
            await table_rows(idx_db, "SELECT number, hash FROM blocks WHERE chain_id = 1 AND number >= $1", head - 2)
        )
        for n in (head - 2, head + 2):
            assert stored[n] == node.rpc("eth_getBlockByNumber", hex(n), False)["hash"]
    finally:
        await stop_indexer(stop, task)
    await assert_matches_chain(idx_db, 1, d, extra_holders=tuple(w.values()))


def test_backoff_grows_with_jitter_to_a_cap_and_resets() -> None:
    import random

    from indexer.backoff import Backoff

    b = Backoff(0.1, 2.0, rng=random.Random(1))
    delays = [b.next() for _ in range(8)]
    for i, delay in enumerate(delays):
        full = min(2.0, 0.1 * 2**i)
        assert full / 2 <= delay <= full
    assert max(delays) <= 2.0 and b.failing_for >= 0
    b.reset()
    assert b.next() <= 0.1


async def test_rwa_index_backfill_through_20_percent_faults_finishes_and_verify_passes(
    idx_db: str, node: AnvilNode, redis_url: str
) -> None:
    """The CLI as operators run it (start-up checks included) through a provider failing 20% of its requests:
    one run finishes (before: "RPC unreachable", rerun after rerun), then `rwa index verify` exits 0."""
    from tests.indexer.cli_helpers import run_rwa

    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    w = await ready(d)
    for _ in range(8):
        await transact(d.stack.token.functions.transfer(w["dave"], E18), w["bob"])
    node.mine(10)
    proxy = await FaultProxy(node.url, fault_rate=0.2, timeout_s=1.0, seed=7).start()
    extra = {"RWA_INDEXER_BATCH_EVENTS": "10", "RWA_INDEXER_LOGS_PER_CALL": "5"}
    try:
        result = await asyncio.to_thread(
            run_rwa,
            ["backfill", "--chain", "1", "--from-block", str(d.start_block)],
            idx_db,
            redis_url,
            {1: proxy.url},
            240,
            extra,
        )
    finally:
        await proxy.stop()
    assert result.code == 0, result.output
    assert "backfill done" in result.stderr and "Traceback" not in result.output
    assert sum(proxy.injected.values()) >= 3, proxy.injected
    for token in (d.stack.token.address, d.stack.stablecoin.address):
        verified = await asyncio.to_thread(
            run_rwa, ["verify", "--chain", "1", "--token", token], idx_db, redis_url, {1: node.url}
        )
        assert verified.code == 0, verified.output
    await assert_matches_chain(idx_db, 1, d, extra_holders=tuple(w.values()))
