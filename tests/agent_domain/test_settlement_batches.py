"""Trades settled in batches on a real anvil chain (real executor and indexer in-process): trades matched while
the agent is away settle together in one batchSettlementTransfer, each SETTLED once with its own audit row and the
batch's tx; when one seller has moved its tokens away the batch reverts, its trades are sent alone, and only that
one FAILS (with the revert reason and its cash reversed) while the others still settle."""

from __future__ import annotations

from decimal import Decimal

from chains.deploy import transact
from models.trading import Side
from resolvers import ledger
from tests.agent.conftest import World, running, settings, world  # noqa: F401  (fixtures)
from tests.agent_domain.test_end_to_end import Platform, until
from tests.indexer.conftest import idx_db, indexer_template_db, node  # noqa: F401  (fixtures)


async def test_trades_settle_in_one_batch(world: World) -> None:  # noqa: F811
    p = Platform(world)
    await p.setup()
    seller_w, buyer_w = world.d.accounts[1], world.d.accounts[2]
    seller = await p.investor(seller_w)
    buyer = await p.investor(buyer_w, cash="1000")
    async with running(world, agent=False) as tasks:
        await until(lambda: p.indexed("SELECT balance FROM holdings WHERE holder = $1", seller_w), tasks=tasks)
        for _ in range(3):
            await p.order(buyer, Side.BUY, "1", "10.00")
            await p.order(seller, Side.SELL, "1", "10.00")
    async with running(world) as tasks:
        await until(lambda: p.indexed("SELECT count(*) = 3 FROM trades WHERE settlement = 'SETTLED'"), tasks=tasks)
    [batch] = await world.sql("SELECT * FROM chain_operations WHERE kind = 'batch.settlement.transfer'")
    members = await world.sql("SELECT * FROM chain_operations WHERE kind = 'settlement.transfer'")
    assert batch["state"] == "CONFIRMED" and batch["function"] == "batchSettlementTransfer"
    assert len(members) == 3 and all(m["state"] == "CONFIRMED" and m["batch_id"] == batch["id"] for m in members)
    assert {m["mined_tx_hash"] for m in members} == {batch["mined_tx_hash"]}
    # each trade shows the batch's transaction, and was audited once
    txs = await world.sql("SELECT DISTINCT tx_hash FROM settlement_instructions WHERE status = 'CONFIRMED'")
    assert [r[0] for r in txs] == [batch["mined_tx_hash"]]
    assert await p.indexed("SELECT count(*) FROM audit_log WHERE action = 'trade.settled'") == 3
    assert len(world.transfers_on_chain(seller_w)) == 3  # one transfer per trade, all in one transaction
    assert await world.d.stack.token.functions.balanceOf(buyer_w).call() == 3 * 10**18
    await p.engine.dispose()


async def test_a_batch_member_whose_seller_moved_tokens_fails_alone(world: World) -> None:  # noqa: F811
    p = Platform(world)
    await p.setup()
    seller_w, buyer_w, mover_w = world.d.accounts[1], world.d.accounts[2], world.d.accounts[3]
    token = world.d.stack.token
    await transact(token.functions.mint(mover_w, 3 * 10**18), world.d.agent)
    seller = await p.investor(seller_w)
    mover = await p.investor(mover_w)
    buyer = await p.investor(buyer_w, cash="1000")
    async with running(world, agent=False) as tasks:
        await until(
            lambda: p.indexed(
                "SELECT count(*) = 2 FROM holdings WHERE holder = ANY($1) AND balance > 0", [seller_w, mover_w]
            ),
            tasks=tasks,
        )
        await p.order(buyer, Side.BUY, "2", "10.00")
        await p.order(seller, Side.SELL, "2", "10.00")
        await p.order(buyer, Side.BUY, "3", "10.00")
        await p.order(mover, Side.SELL, "3", "10.00")
        await p.order(buyer, Side.BUY, "1", "10.00")
        await p.order(seller, Side.SELL, "1", "10.00")
    failed_trade, _ = await p.trade_of(mover_w)
    # the mover's tokens leave before the agent runs: its settlement now breaks the token's rules
    await transact(token.functions.transfer(seller_w, 3 * 10**18), mover_w)
    async with running(world) as tasks:
        await until(lambda: p.indexed("SELECT count(*) = 0 FROM trades WHERE settlement = 'PENDING'"), tasks=tasks)
    states = {r[0]: r[1] for r in await world.sql("SELECT id, settlement::text FROM trades")}
    assert states.pop(failed_trade.id) == "FAILED" and set(states.values()) == {"SETTLED"} and len(states) == 2
    assert (
        await p.indexed("SELECT failure_reason FROM trades WHERE id = $1", failed_trade.id)
        == "insufficient unfrozen balance"
    )
    [batch] = await world.sql("SELECT * FROM chain_operations WHERE kind = 'batch.settlement.transfer'")
    assert batch["state"] == "FAILED" and batch["revert_reason"] == "insufficient unfrozen balance"
    members = await world.sql("SELECT * FROM chain_operations WHERE batch_id = $1", batch["id"])
    assert len(members) == 3 and sorted(m["state"] for m in members) == ["CONFIRMED", "CONFIRMED", "FAILED"]
    # the two that settled went alone, one transaction each; nothing of the mover's moved for the trade
    assert len({m["mined_tx_hash"] for m in members if m["state"] == "CONFIRMED"}) == 2
    assert len(world.transfers_on_chain(seller_w)) == 2  # the seller's two settlements
    [own] = world.transfers_on_chain(mover_w)  # the mover's own transfer away, no settlement
    assert own["transactionHash"] not in {h for m in members for h in m["tx_hashes"]}
    async with p.sf() as s:  # the failed 30 came back to the buyer; the settled 30 were paid
        assert (await ledger.balances(s, buyer))[0].available == Decimal(1000 - 30)
    assert await p.indexed("SELECT count(*) FROM audit_log WHERE action = 'trade.settlement_failed'") == 1
    await p.engine.dispose()
