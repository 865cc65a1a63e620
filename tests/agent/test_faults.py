"""Fault tests against real anvil nodes, the real indexer and `rwa agent run` subprocesses: whatever crashes,
drops, fee spikes, reorgs, foreign transactions or gas shortages happen, each business reference ends with exactly
one transfer on chain and one CONFIRMED operation."""

from __future__ import annotations

import asyncio
import signal

import pytest

from chains.deploy import transact
from tests.agent.conftest import World, agent_process, running

pytestmark = pytest.mark.timeout(300)


def one_transfer_per_ref(w: World, ops: dict, refs: list[str]) -> None:
    transfers = w.transfers_on_chain()
    assert len(transfers) == len(refs), [t["transactionHash"] for t in transfers]
    assert {t["transactionHash"] for t in transfers} == {ops[r]["mined_tx_hash"] for r in refs}


async def _wait_exit(proc, timeout: float = 60.0) -> int:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while proc.poll() is None:
        if asyncio.get_running_loop().time() > deadline:
            proc.kill()
            raise AssertionError("agent process did not exit")
        await asyncio.sleep(0.05)
    return proc.returncode


@pytest.mark.parametrize("point", ["after_sign", "after_broadcast"])
async def test_kill_9_then_restart_sends_each_reference_once(world: World, point: str) -> None:
    refs = [f"test:kill:{i}" for i in range(5)]
    for ref in refs:
        await world.enqueue_transfer(ref, 10**18)
    async with running(world, agent=False) as tasks:
        crashing = agent_process(world, crash_at=point)
        assert await _wait_exit(crashing) == -signal.SIGKILL  # died at the hook, like kill -9
        ops = await world.ops()
        # the pass signs in chunks (1, 2, ...): it died after the first, whose op was stored before it was sent;
        # the others were never signed
        signed = [r for r in refs if ops[r]["state"] == "SIGNED"]
        assert signed and all(ops[r]["raw_tx"] for r in signed)
        assert all(ops[r]["state"] == "PENDING" and not ops[r]["raw_tx"] for r in refs if r not in signed)
        if point == "after_sign":
            assert world.transfers_on_chain() == []
        restarted = agent_process(world)
        try:
            ops = await world.wait_ops(lambda o: all(o[r]["state"] == "CONFIRMED" for r in refs), tasks=tasks)
        finally:
            restarted.send_signal(signal.SIGTERM)
            assert await _wait_exit(restarted, 30) == 0
    one_transfer_per_ref(world, ops, refs)
    assert all(len(ops[r]["tx_hashes"]) == 1 for r in refs)  # the same signed tx, sent again


async def test_dropped_transaction_is_broadcast_again(world: World) -> None:
    world.node.set_automine(False)
    try:
        await world.enqueue_transfer("test:drop", 10**18)
        async with running(world, miner=False) as tasks:
            ops = await world.wait_ops(lambda o: o["test:drop"]["state"] == "BROADCAST", tasks=tasks)
            h = ops["test:drop"]["tx_hash"]
            world.node.rpc("anvil_dropTransaction", h)
            assert world.node.rpc("eth_getTransactionByHash", h) is None
            # the agent notices (replace_after_s) and sends the same bytes again
            deadline = asyncio.get_running_loop().time() + 30
            while world.node.rpc("eth_getTransactionByHash", h) is None:
                assert asyncio.get_running_loop().time() < deadline, "not re-broadcast"
                await asyncio.sleep(0.1)
            world.node.set_automine(True)
            world.node.mine(1)
        async with running(world) as tasks:
            ops = await world.wait_ops(lambda o: o["test:drop"]["state"] == "CONFIRMED", tasks=tasks)
    finally:
        world.node.set_automine(True)
    assert ops["test:drop"]["tx_hashes"] == [h] and ops["test:drop"]["mined_tx_hash"] == h
    one_transfer_per_ref(world, ops, ["test:drop"])


async def test_stuck_under_fee_spike_is_replaced_with_bumped_fees(world: World) -> None:
    world.node.set_automine(False)
    try:
        await world.enqueue_transfer("test:spike", 10**18)
        async with running(world, miner=False) as tasks:
            ops = await world.wait_ops(lambda o: o["test:spike"]["state"] == "BROADCAST", tasks=tasks)
            first = ops["test:spike"]
            spike = int(first["max_fee_per_gas"]) * 4
            world.node.rpc("anvil_setNextBlockBaseFeePerGas", hex(spike))
            world.node.mine(1)  # the spiked block leaves our tx out: its max fee is below the base fee
            assert world.node.rpc("eth_getTransactionReceipt", first["tx_hash"]) is None
            ops = await world.wait_ops(lambda o: len(o["test:spike"]["tx_hashes"]) >= 2, tasks=tasks)
            world.node.set_automine(True)
            world.node.mine(1)
        async with running(world) as tasks:
            ops = await world.wait_ops(lambda o: o["test:spike"]["state"] == "CONFIRMED", tasks=tasks)
    finally:
        world.node.set_automine(True)
    op = ops["test:spike"]
    assert op["nonce"] == first["nonce"]  # replaced at the same nonce
    assert int(op["max_fee_per_gas"]) * 1000 >= int(first["max_fee_per_gas"]) * 1125
    assert int(op["max_priority_fee_per_gas"]) * 1000 >= int(first["max_priority_fee_per_gas"]) * 1125
    assert op["mined_tx_hash"] in op["tx_hashes"] and op["mined_tx_hash"] != first["tx_hash"]
    one_transfer_per_ref(world, ops, ["test:spike"])


async def test_revert_when_mined_fails_with_the_reason(world: World) -> None:
    # each estimate passes alone; together they exceed the seller's balance, so the second reverts when mined.
    # Nothing is mined until both are sent: the agent signs a pass in chunks (1, 2, ...), so on an automining node
    # the second would be estimated after the first was mined, and fail at estimation instead
    world.node.set_automine(False)
    try:
        await world.enqueue_transfer("test:a", 6 * 10**23)
        await world.enqueue_transfer("test:b", 6 * 10**23)
        async with running(world, miner=False) as tasks:
            await world.wait_ops(lambda o: o["test:a"]["state"] == o["test:b"]["state"] == "BROADCAST", tasks=tasks)
        world.node.set_automine(True)
        world.node.mine(1)
        async with running(world) as tasks:
            ops = await world.wait_ops(
                lambda o: {o["test:a"]["state"], o["test:b"]["state"]} == {"CONFIRMED", "FAILED"}, tasks=tasks
            )
    finally:
        world.node.set_automine(True)
    failed = ops["test:b"] if ops["test:b"]["state"] == "FAILED" else ops["test:a"]
    assert failed["mined_status"] == 0 and failed["revert_reason"] == "sender balance too low"
    assert failed["nonce"] is not None and failed["mined_block"] is not None


async def test_reorg_that_removes_the_transfer_ends_confirmed_once(world: World) -> None:
    world.node.mine(3)  # the reorg below must only remove blocks of this test's op
    await world.enqueue_transfer("test:reorg", 10**18)
    async with running(world, miner=False) as tasks:
        ops = await world.wait_ops(lambda o: o["test:reorg"]["state"] == "MINED", tasks=tasks)
        gone = ops["test:reorg"]
        world.node.mine(1)
        world.node.reorg(2)  # the last two blocks replaced by empty ones: our tx is no longer on chain
        replaced = world.node.rpc("eth_getBlockByNumber", hex(gone["mined_block"]), False)
        assert replaced["hash"] != gone["mined_block_hash"]
        ops = await world.wait_ops(
            lambda o: (
                o["test:reorg"]["mined_block_hash"] not in (None, gone["mined_block_hash"])
                and o["test:reorg"]["state"] == "MINED"
            ),
            tasks=tasks,
        )
    async with running(world) as tasks:
        ops = await world.wait_ops(lambda o: o["test:reorg"]["state"] == "CONFIRMED", tasks=tasks)
    op = ops["test:reorg"]
    assert op["tx_hashes"] == [gone["tx_hash"]]  # the stored raw tx, sent again
    one_transfer_per_ref(world, ops, ["test:reorg"])


async def test_key_used_outside_the_platform(world: World) -> None:
    refs = [f"test:outside:{i}" for i in range(3)]
    await world.enqueue_transfer(refs[0], 10**18)
    async with running(world) as tasks:
        await world.wait_ops(lambda o: o[refs[0]]["state"] == "CONFIRMED", tasks=tasks)
        # somebody sends with the agent's key directly (the node signs for the unlocked account)
        for _ in range(2):
            await transact(world.d.stack.token.functions.mint(world.buyer, 1), world.d.agent)
        for ref in refs[1:]:
            await world.enqueue_transfer(ref, 10**18)
        ops = await world.wait_ops(lambda o: all(o[r]["state"] == "CONFIRMED" for r in refs), tasks=tasks)
    one_transfer_per_ref(world, ops, refs)
    assert len({ops[r]["nonce"] for r in refs}) == len(refs)


async def test_nonce_taken_by_an_outside_tx_is_signed_again(world: World) -> None:
    """Our signed tx at nonce n loses the race to another tx of the same key at n: the op is signed again."""
    world.node.set_automine(False)
    try:
        await world.enqueue_transfer("test:race", 10**18)
        async with running(world, miner=False) as tasks:
            ops = await world.wait_ops(lambda o: o["test:race"]["state"] == "BROADCAST", tasks=tasks)
            lost = ops["test:race"]
            world.node.rpc("anvil_dropTransaction", lost["tx_hash"])
            # the key's owner sends something else at the same nonce, and it is mined
            world.node.rpc(
                "eth_sendTransaction",
                {"from": world.d.agent, "to": world.d.agent, "value": "0x0", "nonce": hex(lost["nonce"])},
            )
            world.node.set_automine(True)
            world.node.mine(1)
        async with running(world) as tasks:
            ops = await world.wait_ops(lambda o: o["test:race"]["state"] == "CONFIRMED", tasks=tasks)
    finally:
        world.node.set_automine(True)
    op = ops["test:race"]
    assert op["nonce"] != lost["nonce"] and op["attempts"] == 2
    assert lost["tx_hash"] in op["tx_hashes"] and op["mined_tx_hash"] != lost["tx_hash"]
    one_transfer_per_ref(world, ops, ["test:race"])


async def test_two_agent_processes_one_sender(world: World) -> None:
    refs = [f"test:two:{i}" for i in range(30)]
    for ref in refs:
        await world.enqueue_transfer(ref, 10**18)
    async with running(world, agent=False) as tasks:
        procs = [agent_process(world), agent_process(world)]
        try:
            ops = await world.wait_ops(lambda o: all(o[r]["state"] == "CONFIRMED" for r in refs), tasks=tasks)
            # this database's sender locks only: pg_locks spans the server, where other runs may hold theirs
            holders = await world.sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid = $1::bigint::oid",
                0x52574132,
            )
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            codes = [await _wait_exit(p, 30) for p in procs]
    assert codes == [0, 0]
    assert holders[0][0] == 1  # exactly one process held the sender lock
    nonces = [ops[r]["nonce"] for r in refs]
    assert len(set(nonces)) == len(refs)
    one_transfer_per_ref(world, ops, refs)


async def test_signer_out_of_gas_waits_then_completes(world: World) -> None:
    from agent import metrics

    agent_addr = world.d.agent
    saved = world.node.rpc("eth_getBalance", agent_addr, "latest")
    world.node.rpc("anvil_setBalance", agent_addr, hex(10**9))  # dust: below the threshold, cannot pay any gas
    try:
        await world.enqueue_transfer("test:gas", 10**18)
        async with running(world) as tasks:
            await asyncio.sleep(2.0)  # several iterations at 0.05 s: nothing may be sent meanwhile
            ops = await world.ops()
            assert ops["test:gas"]["state"] == "PENDING" and ops["test:gas"]["nonce"] is None
            assert metrics.GAS_LOW.labels("1", agent_addr)._value.get() == 1
            world.node.rpc("anvil_setBalance", agent_addr, saved)
            ops = await world.wait_ops(lambda o: o["test:gas"]["state"] == "CONFIRMED", tasks=tasks)
            assert metrics.GAS_LOW.labels("1", agent_addr)._value.get() == 0
    finally:
        world.node.rpc("anvil_setBalance", agent_addr, saved)
    one_transfer_per_ref(world, ops, ["test:gas"])
