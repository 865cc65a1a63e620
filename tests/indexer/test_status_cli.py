"""`rwa index status`: node head/safe/finalized next to the database cursor, per chain, as JSON or a table."""

from __future__ import annotations

from tests.indexer.cli_helpers import SECRETS, cli_database_url, closed_port, run_many, secret_url, sql  # noqa: F401

KEYS = {
    "chain_id",
    "chain",
    "configured",
    "reachable",
    "error",
    "endpoints",
    "head",
    "safe",
    "finalized",
    "indexed",
    "lag",
    "recent_events",
    "window_blocks",
    "events_per_second",
    "cursor_updated_at",
    "state",
    "stopped_reason",
    "error_count",
    "last_error",
    "backfills",
}


async def test_status_json_and_table(cli_database_url, redis_url, local_chains) -> None:  # type: ignore[no-untyped-def]
    eth = local_chains[1]
    eth.mine(12)  # so that anvil has a finalized block (head - 8)
    await sql(cli_database_url, "INSERT INTO indexer_cursors (chain_id, indexed_block, head_block) VALUES (1, 5, 6)")
    dead = closed_port()
    # polygon's URL points at the chain-1 node: a misconfiguration status must name, not crash on
    rpc = {1: eth.url, 137: eth.url, 56: secret_url(dead)}
    as_json, table = run_many([(["status", "--json"], rpc), (["status"], rpc)], cli_database_url, redis_url)
    head_after = eth.block_number()

    assert as_json.code == 0, as_json.output
    rows = {r["chain_id"]: r for r in as_json.json()["chains"]}
    assert list(rows) == [1, 137, 56]
    assert all(set(r) == KEYS for r in rows.values())
    ethereum = rows[1]
    assert ethereum["reachable"] and ethereum["error"] is None and ethereum["chain"] == "ethereum"
    assert ethereum["endpoints"] == [f"http://127.0.0.1:{eth.port}"]
    assert 12 <= ethereum["head"] <= head_after
    assert ethereum["safe"] == ethereum["head"] - 4 and ethereum["finalized"] == ethereum["head"] - 8
    assert ethereum["indexed"] == 5 and ethereum["lag"] == ethereum["head"] - 5
    assert ethereum["cursor_updated_at"] is not None

    polygon = rows[137]
    assert not polygon["reachable"] and "node reports chain id 1, expected 137" in polygon["error"]
    bsc = rows[56]
    assert bsc["configured"] and not bsc["reachable"] and bsc["head"] is None and bsc["indexed"] is None
    assert f"127.0.0.1:{dead}" in bsc["error"] and bsc["endpoints"] == [f"http://127.0.0.1:{dead}"]
    assert not [s for s in SECRETS if s in as_json.output]

    assert table.code == 0, table.output
    assert "ethereum (1)" in table.stdout and "polygon (137)" in table.stdout and "bsc (56)" in table.stdout
    assert f"{ethereum['head'] - 5:,}" in table.stdout or f"{head_after - 5:,}" in table.stdout
    assert not [s for s in SECRETS if s in table.output]


def test_status_exits_3_when_every_configured_node_is_down(cli_database_url, redis_url) -> None:
    down, unconfigured = run_many(
        [(["status", "--json"], {1: secret_url(closed_port())}), (["status", "--json"], {})],
        cli_database_url,
        redis_url,
    )
    assert down.code == 3, down.output
    rows = {r["chain_id"]: r for r in down.json()["chains"]}
    assert not rows[1]["reachable"] and "RPC unreachable" in rows[1]["error"]
    assert not rows[137]["configured"] and "set RPC_URLS_137" in rows[137]["error"]
    # nothing configured: the database side alone is still a valid answer
    assert unconfigured.code == 0, unconfigured.output
    assert [r["configured"] for r in unconfigured.json()["chains"]] == [False, False, False]
