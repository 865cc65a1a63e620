"""A backfill's first batches land in a table without planner statistics: the per-key recompute lookups must
still use the subject index (issue 13 benchmark: 5,000 registrations in one batch took 53 s with the
(chain_id, address, block_number) index, filtering every event of the registry for each investor)."""

from __future__ import annotations

import json

from chains.anvil import AnvilNode
from chains.deploy import transact
from chains.loadgen import load_recipients
from core.settings import Settings
from indexer.service import backfill
from indexer.state import _LATEST_IDENTITY_SQL, _RECOMPUTE_HOLDINGS_SQL
from tests.indexer.conftest import TEST_CONFIG, add_tokens, deploy, table_rows


async def test_recompute_lookups_use_the_subject_index_after_a_bulk_backfill(
    node: AnvilNode, settings: Settings, idx_db: str
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    investors = load_recipients(1_000, offset=0x30000)
    for i in range(0, len(investors), 500):
        chunk = investors[i : i + 500]
        await transact(d.stack.registry.functions.batchRegisterIdentity(chunk, chunk, [840] * len(chunk)), d.agent)
    node.mine(10)
    result = await backfill(settings, 1, d.start_block, node.block_number() - 8, config=TEST_CONFIG)
    assert result.events >= 1_000
    assert len(await table_rows(idx_db, "SELECT 1 FROM identities")) == 1_000

    registry = [d.stack.registry.address] * 200
    for sql in (
        _LATEST_IDENTITY_SQL,
        _RECOMPUTE_HOLDINGS_SQL.split("ON CONFLICT")[0].split("\n", 2)[2].replace("SELECT $1,", "SELECT $1::int,"),
    ):
        plan = json.loads(
            (await table_rows(idx_db, "EXPLAIN (FORMAT JSON) " + sql, 1, registry, investors[:200]))[0][0]
        )
        scans = []

        def walk(node: dict) -> None:  # type: ignore[type-arg]
            if node.get("Relation Name") == "chain_events":
                scans.append(node.get("Index Name"))  # noqa: B023 (walk runs within this iteration)
            for child in node.get("Plans", []):
                walk(child)

        walk(plan[0]["Plan"])
        assert scans and set(scans) == {"ix_chain_events_subject"}, (scans, sql)
