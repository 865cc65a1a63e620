"""Replaying a range changes nothing: raw rows are keyed by (chain, block hash, log index) and
derived state only moves for rows actually inserted."""

from __future__ import annotations

from chains.anvil import AnvilNode
from core.settings import Settings
from indexer.service import backfill
from tests.indexer.conftest import TEST_CONFIG, add_tokens, assert_matches_chain, deploy, snapshot, table_rows
from tests.indexer.scenario import run_scenario


async def test_backfill_twice_and_forced_refetch_leave_identical_rows(
    node: AnvilNode, settings: Settings, idx_db: str
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    await run_scenario(d)
    head = node.block_number()
    updates = []
    first = await backfill(settings, 1, d.start_block, head, progress=updates.append, config=TEST_CONFIG)
    assert first.events > 20 and first.transfers > 5 and not first.stopped
    assert updates and updates[-1].blocks_done == updates[-1].blocks_total == first.blocks
    await assert_matches_chain(idx_db, 1, d)
    before = await snapshot(idx_db)
    assert before["cursor"][0][1] == head  # a full backfill from the start moves the cursor

    again = await backfill(settings, 1, d.start_block, head, config=TEST_CONFIG)
    assert again.blocks == 0 and again.events == 0  # everything already fetched: nothing to scan
    assert await snapshot(idx_db) == before

    # Forget the fetched intervals: the whole range is fetched and written again, and still nothing changes.
    await table_rows(idx_db, "DELETE FROM fetched_intervals")
    forced = await backfill(settings, 1, d.start_block, head, config=TEST_CONFIG)
    assert forced.blocks == head - d.start_block + 1 and forced.events == 0
    after = await snapshot(idx_db)
    assert after == before
    # the token-only replay too
    await table_rows(idx_db, "DELETE FROM fetched_intervals")
    await backfill(settings, 1, d.start_block, head, token=d.stack.token.address.lower(), config=TEST_CONFIG)
    after_token = await snapshot(idx_db)
    assert {k: v for k, v in after_token.items() if k != "fetched_intervals"} == {
        k: v for k, v in before.items() if k != "fetched_intervals"
    }
