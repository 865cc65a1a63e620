"""End to end on one chain: the scenario's events land, derived state equals the contract views."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from chains.anvil import AnvilNode
from core.settings import Settings
from indexer.service import run_indexer
from tests.indexer.conftest import TEST_CONFIG, add_tokens, assert_matches_chain, deploy, table_rows, wait_synced
from tests.indexer.scenario import run_scenario


async def test_scenario_state_matches_contract_views(node: AnvilNode, settings: Settings, idx_db: str) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    wallets = await run_scenario(d)
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_synced(idx_db, {1: node}, task=task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    # Prometheus: node head, indexed and finalized block, lag, events written (counters are per process)
    head = node.block_number()
    sample = REGISTRY.get_sample_value
    assert sample("rwa_indexer_indexed_block", {"chain_id": "1"}) == head
    assert sample("rwa_indexer_node_head_block", {"chain_id": "1"}) >= head - 1
    assert sample("rwa_indexer_finalized_block", {"chain_id": "1"}) == head - 8
    assert sample("rwa_indexer_lag_blocks", {"chain_id": "1"}) is not None
    assert (sample("rwa_indexer_events_written_total", {"chain_id": "1", "event": "TokensFrozen"}) or 0) >= 2
    checked = await assert_matches_chain(idx_db, 1, d, extra_holders=tuple(wallets.values()))
    assert checked >= 6
    events = dict(await table_rows(idx_db, "SELECT event, count(*) FROM chain_events GROUP BY event"))
    for name in (
        "Transfer",
        "Paused",
        "Unpaused",
        "AddressFrozen",
        "TokensFrozen",
        "TokensUnfrozen",
        "RecoverySuccess",
        "IdentityRegistered",
        "IdentityRemoved",
        "CountryUpdated",
    ):
        assert events.get(name, 0) >= 1, (name, events)
    assert "Unknown" not in events
    # the recovered wallet carries alice's freeze; alice is unfrozen and no longer registered
    (dave,) = await table_rows(
        idx_db, "SELECT frozen, frozen_amount, balance FROM holdings WHERE holder = $1", wallets["dave"]
    )
    assert dave[0] is True and int(dave[1]) == 200 * 10**18 and int(dave[2]) == 900 * 10**18
    ident = dict((r[0], r[1]) for r in await table_rows(idx_db, "SELECT investor, registered FROM identities"))
    assert ident[wallets["alice"]] is False and ident[wallets["dave"]] is True and ident[wallets["erin"]] is False
