"""Batches sharing one transaction while the writer is behind (indexer/pipeline.py): all or nothing.

The write stage is slowed (a fault: 1 s before each batch) so that the next batch is always fetched
when one is written, which is when batches share a transaction; the third write then fails. Nothing of
that group may be visible (no transfer, no holding, cursor unmoved, no progress reported), and the
retried backfill ends equal to the chain.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chains.anvil import AnvilNode
from chains.loadgen import load_recipients, prepare_security_token_load, send_batch_transfers
from core.settings import Settings
from indexer import pipeline
from indexer.config import IndexerConfig
from indexer.service import backfill
from tests.indexer.conftest import TEST_CONFIG, add_tokens, assert_matches_chain, deploy, table_rows
from tests.indexer.scenario import run_scenario


class WriteFault(Exception):
    pass


async def test_a_failed_batch_rolls_back_its_whole_group_then_the_retry_matches_the_chain(
    node: AnvilNode, settings: Settings, idx_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    recipients = load_recipients(50)
    await prepare_security_token_load(d.w3, d.stack, d.agent, recipients, supply=10**24)
    await send_batch_transfers(node.url, d.stack.token.address, d.agent, recipients, txs=12, rpc_batch=1)
    await run_scenario(d)
    head = node.block_number()
    config = IndexerConfig(**{**TEST_CONFIG.__dict__, "batch_events": 100, "logs_per_call": 100})
    assert pipeline.COMMIT_BATCHES >= 3

    real_write = pipeline.write_batch
    calls = 0

    async def slow_then_failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        await asyncio.sleep(1.0)  # the producer fetches the next batch meanwhile
        if calls == 3:
            raise WriteFault("third write")
        return await real_write(*args, **kwargs)

    monkeypatch.setattr(pipeline, "write_batch", slow_then_failing)
    updates: list[Any] = []
    with pytest.raises(WriteFault):
        await backfill(settings, 1, d.start_block, head, progress=updates.append, config=config)
    assert calls == 3
    assert updates == []  # batches 1 and 2 were in the failed group: never committed, never reported
    assert await table_rows(idx_db, "SELECT count(*) FROM token_transfers") == [(0,)]
    assert await table_rows(idx_db, "SELECT count(*) FROM holdings") == [(0,)]
    assert await table_rows(idx_db, "SELECT count(*) FROM chain_events") == [(0,)]
    assert await table_rows(idx_db, "SELECT count(*) FROM fetched_intervals") == [(0,)]
    cursor = await table_rows(idx_db, "SELECT indexed_block FROM indexer_cursors WHERE chain_id = 1")
    assert cursor in ([], [(d.start_block - 1,)])

    monkeypatch.setattr(pipeline, "write_batch", real_write)
    done = await backfill(settings, 1, d.start_block, head, config=config)
    assert done.transfers > 600 and not done.stopped
    await assert_matches_chain(idx_db, 1, d)
