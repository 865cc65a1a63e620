"""The executor end to end on a real anvil node with the real indexer: settle, fail, confirm once."""

from __future__ import annotations

import pytest

from agent import handlers
from models.operations import OperationState
from tests.agent.conftest import World, running


@pytest.fixture
def calls() -> list[tuple[str, str, str | None]]:
    seen: list[tuple[str, str, str | None]] = []

    async def on_confirmed(session, op) -> None:  # type: ignore[no-untyped-def]
        seen.append(("confirmed", op.business_ref, None))

    async def on_failed(session, op, reason) -> None:  # type: ignore[no-untyped-def]
        seen.append(("failed", op.business_ref, reason))

    handlers.register("test.", on_confirmed=on_confirmed, on_failed=on_failed)
    yield seen
    handlers.unregister("test.")


async def test_transfers_confirm_once_from_indexed_events(world: World, calls: list) -> None:
    refs = [f"test:{i}" for i in range(12)]
    for i, ref in enumerate(refs):
        await world.enqueue_transfer(ref, (i + 1) * 10**18)
    async with running(world) as tasks:
        ops = await world.wait_ops(lambda o: all(o[r]["state"] == "CONFIRMED" for r in refs), tasks=tasks)
    transfers = world.transfers_on_chain()
    assert len(transfers) == len(refs)  # one transfer per business reference
    for ref in refs:
        op = ops[ref]
        assert op["mined_tx_hash"] in {t["transactionHash"] for t in transfers}
        assert op["confirmed_block"] == op["mined_block"] and op["attempts"] == 1
        assert op["tx_hashes"] == [op["tx_hash"]]
    nonces = sorted(op["nonce"] for op in ops.values())
    assert nonces == list(range(nonces[0], nonces[0] + len(refs)))  # consecutive, no gap, no reuse
    assert sorted(r for kind, r, _ in calls if kind == "confirmed") == sorted(refs)
    # finality: each confirmation happened at a block the indexer had finalized
    fin = (await world.sql("SELECT finalized_block FROM indexer_cursors WHERE chain_id = 1"))[0][0]
    assert all(op["confirmed_block"] <= fin for op in ops.values())


async def test_revert_at_estimation_fails_without_sending(world: World, calls: list) -> None:
    await world.enqueue_transfer("test:too-much", 10**30)  # more than the seller has
    nonce_before = world.node.rpc("eth_getTransactionCount", world.d.agent, "latest")
    async with running(world) as tasks:
        ops = await world.wait_ops(lambda o: o["test:too-much"]["state"] == "FAILED", tasks=tasks)
    op = ops["test:too-much"]
    assert op["revert_reason"] == "sender balance too low"
    assert op["nonce"] is None and op["raw_tx"] is None and op["tx_hashes"] == []
    assert world.node.rpc("eth_getTransactionCount", world.d.agent, "latest") == nonce_before
    assert calls == [("failed", "test:too-much", "sender balance too low")]
    assert OperationState(op["state"]) is OperationState.FAILED
