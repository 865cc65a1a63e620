"""`rwa index verify`: indexed holdings against balanceOf/totalSupply on a real anvil node, at the indexed block
and at an earlier one (balances recomputed from indexed transfers); a tampered holding is caught and listed."""

from __future__ import annotations

from chains.deploy import deploy_stablecoin, transact
from tests.indexer.cli_helpers import cli_database_url, run_many, run_rwa, sql  # noqa: F401

ZERO = "0x" + "0" * 40


async def test_verify_matches_then_catches_a_tampered_holding(
    cli_database_url, redis_url, anvil, anvil_w3, anvil_accounts
) -> None:
    owner, alice, bob, carol = anvil_accounts[:4]
    usd = await deploy_stablecoin(anvil_w3, owner)
    moves = [(ZERO, alice, 1_000_000), (ZERO, bob, 500_000), (alice, carol, 300_000)]
    blocks = []
    for src, dst, value in moves:
        fn = usd.functions.mint(dst, value) if src == ZERO else usd.functions.transfer(dst, value)
        receipt = await transact(fn, owner if src == ZERO else src)
        log = receipt["logs"][-1]
        blocks.append(receipt["blockNumber"])
        await sql(
            cli_database_url,
            """INSERT INTO token_transfers (chain_id, block_hash, log_index, block_number,
                      tx_hash, token_address, from_address, to_address, value)
                      VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)""",
            "0x" + log["blockHash"].hex().removeprefix("0x"),
            log["logIndex"],
            receipt["blockNumber"],
            "0x" + receipt["transactionHash"].hex().removeprefix("0x"),
            usd.address,
            src,
            dst,
            value,
        )
    for holder, balance in ((alice, 700_000), (bob, 500_000), (carol, 300_000)):
        await sql(
            cli_database_url,
            """INSERT INTO holdings (chain_id, token_address, holder, balance, frozen_amount,
                      frozen, updated_block) VALUES (1, $1, $2, $3, 0, false, $4)""",
            usd.address,
            holder,
            balance,
            blocks[-1],
        )
    await sql(
        cli_database_url,
        """INSERT INTO indexer_cursors (chain_id, indexed_block) VALUES (1, $1)
              ON CONFLICT (chain_id) DO UPDATE SET indexed_block = excluded.indexed_block""",
        blocks[-1],
    )
    anvil.mine(3)  # the node moves on; verify must still look at the indexed block, not "latest"
    rpc = {1: anvil.url}
    other = anvil_accounts[9]  # an address with no indexed rows

    at_head, at_past, above, unknown = run_many(
        [
            (["verify", "--chain", "1", "--token", usd.address], rpc),
            (["verify", "--chain", "ethereum", "--token", usd.address.lower(), "--block", str(blocks[1])], rpc),
            (["verify", "--chain", "1", "--token", usd.address, "--block", str(blocks[-1] + 1)], rpc),
            (["verify", "--chain", "1", "--token", other], rpc),
        ],
        cli_database_url,
        redis_url,
    )

    assert at_head.code == 0, at_head.output
    assert f"OK: 3 holder(s) of {usd.address} on ethereum (chain 1) at block {blocks[-1]:,}" in at_head.stdout
    assert "0 mismatched; total supply matches" in at_head.stdout
    # at blocks[1] Alice still had everything and Carol nothing: only correct if recomputed from transfers
    assert at_past.code == 0, at_past.output
    assert f"at block {blocks[1]:,}" in at_past.stdout
    assert above.code == 2 and f"block {blocks[-1] + 1} is above the indexed block {blocks[-1]}" in above.stderr
    assert unknown.code == 2 and "has no indexed holdings or transfers" in unknown.stderr

    await sql(cli_database_url, "UPDATE holdings SET balance = balance + 1 WHERE holder = $1", bob)
    tampered = run_rwa(["verify", "--chain", "1", "--token", usd.address], cli_database_url, redis_url, rpc)
    assert tampered.code == 1, tampered.output
    assert "1 mismatched holding(s)" in tampered.stdout
    row = next(line for line in tampered.stdout.splitlines() if bob in line)
    assert "500,001" in row and "500,000" in row and "+1" in row
    assert "MISMATCH: totalSupply 1,500,000 vs indexed sum 1,500,001 (+1)" in tampered.stdout
    assert "Traceback" not in tampered.output
