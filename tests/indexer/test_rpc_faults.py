"""Indexing through a misbehaving provider (429, 503, timeouts, malformed JSON, dropped batch items,
range-limit errors) with the first URL down: the indexed state still ends exactly right."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from chains.anvil import AnvilNode
from chains.deploy import transact
from chains.loadgen import load_recipients, prepare_security_token_load, send_batch_transfers
from core.settings import Settings
from indexer.service import run_indexer
from tests.fixtures.db import reloaded
from tests.indexer.conftest import (
    TEST_CONFIG,
    add_tokens,
    assert_matches_chain,
    deploy,
    table_rows,
    transfer_request,
    wait_at_head,
)
from tests.indexer.faulty_rpc import FaultyRpc
from tests.indexer.scenario import E18, run_scenario
from tests.test_rpc_anvil import closed_port


async def test_faulty_provider_and_dead_url_still_index_exactly(
    node: AnvilNode, settings: Settings, idx_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    recipients = load_recipients(50)
    await prepare_security_token_load(d.w3, d.stack, d.agent, recipients, supply=10**24)
    await send_batch_transfers(node.url, d.stack.token.address, d.agent, recipients, txs=20, rpc_batch=1)
    w = await run_scenario(d)
    proxy = await FaultyRpc(node.url, fault_rate=0.25, delay_s=1.2).start()
    monkeypatch.setenv("RPC_URLS_1", f"http://127.0.0.1:{closed_port()},{proxy.url}")
    settings = reloaded(settings)  # per-chain URLs are read when settings are built
    config = dataclasses.replace(TEST_CONFIG, rpc_timeout_s=0.8, error_backoff_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=config))
    try:
        await wait_at_head(idx_db, 1, node, timeout=60, task=task)
        # and a reorg while the provider misbehaves
        await transact(d.stack.token.functions.unpause(), d.agent)
        await transact(d.stack.token.functions.setAddressFrozen(w["dave"], False), d.agent)
        for _ in range(3):
            await transact(d.stack.token.functions.transfer(w["bob"], E18), w["dave"])
        await wait_at_head(idx_db, 1, node, timeout=60, task=task)
        node.reorg(2, [(transfer_request(w["dave"], d.stack.token.address, w["bob"], 5 * E18), 1)])
        await wait_at_head(idx_db, 1, node, timeout=60, task=task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await proxy.stop()
    await assert_matches_chain(idx_db, 1, d, extra_holders=(*recipients[:10], *w.values()))
    (dupes,) = (
        await table_rows(idx_db, "SELECT count(*) - count(DISTINCT (chain_id, tx_hash, log_index)) FROM chain_events")
    )[0]
    assert dupes == 0
    (n,) = (
        await table_rows(idx_db, "SELECT count(*) FROM token_transfers WHERE token_address = $1", d.stack.token.address)
    )[0]
    assert n >= 1000 + 7
    for kind in ("429", "503", "timeout", "malformed", "drop_item", "range_limit"):
        assert proxy.injected[kind] > 0, proxy.injected
