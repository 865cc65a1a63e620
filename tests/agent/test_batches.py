"""Batch operations against a real anvil node, the real indexer and `rwa agent run` subprocesses: PENDING
settlementTransfer operations travel in one batchSettlementTransfer transaction, each business reference still
lands exactly once (a kill -9 between signing and broadcasting the batch re-sends the same transaction), and a batch
that reverts, at estimation or when mined, sends its members alone so that only the one breaking a rule fails."""

from __future__ import annotations

import signal

import pytest

from chains.deploy import transact
from tests.agent.conftest import World, agent_process, running
from tests.agent.test_faults import _wait_exit, one_transfer_per_ref

pytestmark = pytest.mark.timeout(300)


async def settlement(w: World, ref: str, amount: int, *, sender: str | None = None) -> None:
    await w.enqueue_transfer(ref, amount, sender=sender, function="settlementTransfer")


def batches(ops: dict) -> list:
    return [o for o in ops.values() if o["kind"].startswith("batch.")]


@pytest.mark.parametrize("point", ["after_sign", "after_broadcast"])
async def test_kill_9_around_a_batch_broadcast_sends_each_reference_once(world: World, point: str) -> None:
    refs = [f"test:batch:{i}" for i in range(5)]
    for ref in refs:
        await settlement(world, ref, 10**18)
    nonce_before = int(world.node.rpc("eth_getTransactionCount", world.d.agent, "latest"), 16)
    async with running(world, agent=False) as tasks:
        crashing = agent_process(world, crash_at=point)
        assert await _wait_exit(crashing) == -signal.SIGKILL
        ops = await world.ops()
        [batch] = batches(ops)
        # the batch's signed tx is stored before it was sent, and its members carry its hash
        assert batch["state"] == "SIGNED" and batch["raw_tx"] and batch["function"] == "batchSettlementTransfer"
        assert all(ops[r]["state"] == "BATCHED" and ops[r]["batch_id"] == batch["id"] for r in refs)
        assert all(ops[r]["tx_hashes"] == [batch["tx_hash"]] and ops[r]["nonce"] is None for r in refs)
        if point == "after_sign":
            assert world.transfers_on_chain() == []
        restarted = agent_process(world)
        try:
            ops = await world.wait_ops(lambda o: all(o[r]["state"] == "CONFIRMED" for r in refs), tasks=tasks)
        finally:
            restarted.send_signal(signal.SIGTERM)
            assert await _wait_exit(restarted, 30) == 0
    [batch] = batches(ops)
    assert batch["state"] == "CONFIRMED" and batch["tx_hashes"] == [batch["tx_hash"]]  # the same tx, sent again
    one_transfer_per_ref(world, ops, refs)
    assert {ops[r]["mined_tx_hash"] for r in refs} == {batch["mined_tx_hash"]}
    assert all(ops[r]["confirmed_block"] == batch["confirmed_block"] for r in refs)
    # one nonce for the five transfers
    assert int(world.node.rpc("eth_getTransactionCount", world.d.agent, "latest"), 16) == nonce_before + 1


async def test_batch_reverting_at_estimation_sends_its_members_alone(world: World) -> None:
    broke = world.d.accounts[3]  # verified, but holds no tokens: its settlement breaks the token's rules
    good = [f"test:good:{i}" for i in range(3)]
    for ref in good[:2]:
        await settlement(world, ref, 10**18)
    await settlement(world, "test:broke", 10**18, sender=broke)
    await settlement(world, good[2], 10**18)
    async with running(world) as tasks:
        ops = await world.wait_ops(
            lambda o: all(o[r]["state"] == "CONFIRMED" for r in good) and o["test:broke"]["state"] == "FAILED",
            tasks=tasks,
        )
    [batch] = batches(ops)
    assert batch["state"] == "FAILED" and batch["revert_reason"] == "insufficient unfrozen balance"
    assert batch["nonce"] is None and batch["tx_hashes"] == []  # nothing was sent
    failed = ops["test:broke"]
    assert failed["revert_reason"] == "insufficient unfrozen balance" and failed["batch_id"] == batch["id"]
    # the others went alone, one transaction each
    one_transfer_per_ref(world, ops, good)
    assert len({ops[r]["mined_tx_hash"] for r in good}) == 3
    assert world.transfers_on_chain(broke) == []


async def test_batch_reverting_when_mined_sends_its_members_alone(world: World) -> None:
    mover = world.d.accounts[3]
    await transact(world.d.stack.token.functions.mint(mover, 2 * 10**18), world.d.agent)
    refs = ["test:mined:a", "test:mined:b"]
    await settlement(world, refs[0], 10**18)
    await settlement(world, "test:mined:moved", 2 * 10**18, sender=mover)
    await settlement(world, refs[1], 10**18)
    world.node.set_automine(False)
    try:
        async with running(world, miner=False) as tasks:
            ops = await world.wait_ops(lambda o: any(b["state"] == "BROADCAST" for b in batches(o)), tasks=tasks)
            [batch] = batches(ops)
            # the seller moves its tokens away, paying more for gas: mined first, the batch then reverts
            world.node.rpc(
                "eth_sendTransaction",
                {
                    "from": mover,
                    "to": world.d.stack.token.address,
                    "maxPriorityFeePerGas": hex(10**11),
                    "maxFeePerGas": hex(10**12),
                    "data": world.d.stack.token.encode_abi("transfer", [world.d.accounts[2], 2 * 10**18]),
                },
            )
            world.node.mine(1)
            rcpt = world.node.rpc("eth_getTransactionReceipt", batch["tx_hash"])
            assert rcpt is not None and int(rcpt["status"], 16) == 0
            world.node.set_automine(True)
        async with running(world) as tasks:
            ops = await world.wait_ops(
                lambda o: (
                    all(o[r]["state"] == "CONFIRMED" for r in refs) and o["test:mined:moved"]["state"] == "FAILED"
                ),
                tasks=tasks,
            )
    finally:
        world.node.set_automine(True)
    [batch] = batches(ops)
    assert batch["state"] == "FAILED" and batch["mined_status"] == 0
    assert batch["revert_reason"] == "insufficient unfrozen balance"
    assert ops["test:mined:moved"]["revert_reason"] == "insufficient unfrozen balance"
    one_transfer_per_ref(world, ops, refs)
    assert batch["mined_tx_hash"] not in {ops[r]["mined_tx_hash"] for r in refs}


async def test_lone_operation_is_not_batched(world: World) -> None:
    await settlement(world, "test:lone", 10**18)
    async with running(world) as tasks:
        ops = await world.wait_ops(lambda o: o["test:lone"]["state"] == "CONFIRMED", tasks=tasks)
    assert batches(ops) == [] and ops["test:lone"]["batch_id"] is None
    one_transfer_per_ref(world, ops, ["test:lone"])
