"""Canceling signed operations on a real anvil node: a SIGNED op the node refuses (its sender cannot pay the gas)
holds its nonce and every later op of the sender behind it; an operator's cancel fills that nonce with a 0-value
self-transfer (agent/cancels.py), the op becomes CANCELED and compensated once, and the later ops go through. The
same for a BROADCAST op racing its cancel (whichever lands decides), and across kill -9 at each new step."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from agent import handlers, metrics
from agent.config import AgentConfig
from agent.context import SenderContext
from agent.executor import iterate
from agent.operations import cancel
from agent.signers import LocalSigner
from agent.status import collect
from chains.registry import get_chain
from chains.rpc import RpcClient
from core.errors import Conflict
from models.identity import AuditLog
from tests.agent.conftest import AGENT_KEY, FAST, World, agent_process, running
from tests.agent.test_faults import _wait_exit, one_transfer_per_ref

pytestmark = pytest.mark.timeout(300)

NO_THRESHOLD = dataclasses.replace(FAST, min_balance_wei={1: 0})  # as for a deposit key: sign whatever the balance
DUST = hex(10**9)  # far below what any transaction's gas costs


@pytest.fixture
def compensations() -> Any:
    """The failure handler of test.* kinds: what each compensation was called with (it must run once per op)."""
    calls: list[tuple[str, str]] = []

    async def on_failed(session: AsyncSession, op: Any, reason: str) -> None:
        calls.append((op.business_ref, reason))

    async def on_confirmed(session: AsyncSession, op: Any) -> None:
        return None

    handlers.register("test.", on_confirmed=on_confirmed, on_failed=on_failed)
    yield calls
    handlers.unregister("test.")


async def _cancel(w: World, op_id: uuid.UUID, reason: str) -> str:
    engine = create_async_engine(w.db_url)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as s:
            op = await cancel(s, op_id, reason, actor_id=None, request_id="test")
            await s.commit()
            return op.state.value
    finally:
        await engine.dispose()


def _self_transfer_at(w: World, sender: str, nonce: int) -> dict[str, Any]:
    """The mined transaction of `sender` at `nonce` (found by scanning the chain's blocks)."""
    head = int(w.node.rpc("eth_blockNumber"), 16)
    for n in range(head, -1, -1):
        block = w.node.rpc("eth_getBlockByNumber", hex(n), True)
        for tx in block["transactions"]:
            if tx["from"].lower() == sender.lower() and int(tx["nonce"], 16) == nonce:
                return tx
    raise AssertionError(f"no transaction of {sender} at nonce {nonce}")


async def test_cancel_of_a_signed_op_refused_for_funds_frees_the_sender(world: World, compensations) -> None:  # type: ignore[no-untyped-def]
    a = world.d.agent
    saved = world.node.rpc("eth_getBalance", a, "latest")
    refs = ["test:stuck", "test:after:1", "test:after:2"]
    ids = {r: await world.enqueue_transfer(r, 10**18) for r in refs}
    world.node.rpc("anvil_setBalance", a, DUST)
    try:
        async with running(world, config=NO_THRESHOLD) as tasks:
            ops = await world.wait_ops(
                lambda o: all(o[r]["state"] == "SIGNED" and o[r]["last_error"] for r in refs), tasks=tasks
            )
            first = ops["test:stuck"]
            assert "insufficient funds" in first["last_error"]
            assert sorted(ops[r]["nonce"] for r in refs) == [first["nonce"], first["nonce"] + 1, first["nonce"] + 2]
            # operators see it: status names the op, its nonce and the node's reason; the gauge counts them
            row = await _status(world, a)
            assert not row.healthy and [x["businessRef"] for x in row.refused] == refs
            assert "insufficient funds" in str(row.refused[0]["reason"]) and row.refused[0]["nonce"] == first["nonce"]
            assert any("fund it or cancel" in p for p in row.problems)
            assert metrics.REFUSED.labels("1", a)._value.get() == 3

            assert await _cancel(world, ids["test:stuck"], "sender underfunded") == "REPLACED"
            # the cancel tx is signed at the op's nonce, but the node refuses it too until the sender has gas for it
            ops = await world.wait_ops(
                lambda o: "cancel tx refused" in (o["test:stuck"]["last_error"] or ""), tasks=tasks
            )
            assert ops["test:stuck"]["state"] == "REPLACED" and ops["test:stuck"]["nonce"] == first["nonce"]
            assert ops["test:stuck"]["tx_hashes"] == first["tx_hashes"]  # the op's own hashes only
            row = await _status(world, a)
            assert [x["businessRef"] for x in row.canceling] == ["test:stuck"]
            assert compensations == []  # nothing is compensated while the op's tx could still land

            world.node.rpc("anvil_setBalance", a, saved)
            ops = await world.wait_ops(
                lambda o: (
                    o["test:stuck"]["state"] == "CANCELED" and all(o[r]["state"] == "CONFIRMED" for r in refs[1:])
                ),
                tasks=tasks,
            )
            assert metrics.REFUSED.labels("1", a)._value.get() == 0
    finally:
        world.node.rpc("anvil_setBalance", a, saved)
    one_transfer_per_ref(world, ops, refs[1:])  # the canceled op moved nothing
    filler = _self_transfer_at(world, a, first["nonce"])
    assert filler["to"].lower() == a.lower() and int(filler["value"], 16) == 0 and filler["input"] in ("0x", "")
    assert filler["hash"] == ops["test:stuck"]["tx_hash"]
    assert compensations == [("test:stuck", "canceled: sender underfunded")]
    assert await _audits(world, ids["test:stuck"]) == 1


async def test_cancel_of_a_broadcast_op_replaces_it_in_the_pool(world: World, compensations) -> None:  # type: ignore[no-untyped-def]
    """A BROADCAST op still pending in the pool: the cancel outbids it at its nonce; it never lands."""
    world.node.set_automine(False)
    try:
        op_id = await world.enqueue_transfer("test:pending", 10**18)
        async with running(world, miner=False) as tasks:
            ops = await world.wait_ops(lambda o: o["test:pending"]["state"] == "BROADCAST", tasks=tasks)
            original = ops["test:pending"]
            assert world.node.rpc("eth_getTransactionByHash", original["tx_hash"]) is not None  # in the pool
            assert await _cancel(world, op_id, "wrong amount") == "REPLACED"
            ops = await world.wait_ops(
                lambda o: (
                    o["test:pending"]["tx_hash"] != original["tx_hash"]
                    and o["test:pending"]["broadcast_at"] is not None
                    and "sent" in (o["test:pending"]["last_error"] or "")
                ),
                tasks=tasks,
            )
            world.node.set_automine(True)
        async with running(world) as tasks:
            ops = await world.wait_ops(lambda o: o["test:pending"]["state"] == "CANCELED", tasks=tasks)
    finally:
        world.node.set_automine(True)
    assert world.transfers_on_chain() == []
    assert world.node.rpc("eth_getTransactionReceipt", original["tx_hash"]) is None
    assert compensations == [("test:pending", "canceled: wrong amount")]


async def test_a_cancel_that_loses_the_race_completes_the_op(world: World, compensations) -> None:  # type: ignore[no-untyped-def]
    """Canceled while BROADCAST, but its own transaction is mined first: the op completes normally and nothing is
    compensated."""
    world.node.set_automine(False)
    try:
        op_id = await world.enqueue_transfer("test:late", 10**18)
        async with running(world, miner=False) as tasks:
            await world.wait_ops(lambda o: o["test:late"]["state"] == "BROADCAST", tasks=tasks)
        world.node.mine(1)  # the agent is stopped: its tx is mined while the database still says BROADCAST
        assert await _cancel(world, op_id, "too slow") == "REPLACED"
        world.node.set_automine(True)
        async with running(world) as tasks:
            ops = await world.wait_ops(lambda o: o["test:late"]["state"] == "CONFIRMED", tasks=tasks)
    finally:
        world.node.set_automine(True)
    one_transfer_per_ref(world, ops, ["test:late"])
    assert compensations == []
    assert ops["test:late"]["revert_reason"] is None  # the cancel's reason is gone with it


async def test_cancel_refused_for_a_mined_op(world: World) -> None:
    op_id = await world.enqueue_transfer("test:mined", 10**18)
    async with running(world, indexer=False) as tasks:
        await world.wait_ops(lambda o: o["test:mined"]["state"] == "MINED", tasks=tasks)
    with pytest.raises(Conflict) as err:
        await _cancel(world, op_id, "late")
    assert err.value.extensions["reason"] == "INVALID_STATE"
    assert (await world.ops())["test:mined"]["state"] == "MINED"


@pytest.mark.parametrize("point", ["after_cancel_sign", "after_cancel_broadcast"])
async def test_kill_9_during_a_cancel_then_restart(world: World, point: str) -> None:
    a = world.d.agent
    saved = world.node.rpc("eth_getBalance", a, "latest")
    refs = ["test:stuck", "test:after"]
    ids = {r: await world.enqueue_transfer(r, 10**18) for r in refs}
    env = {"RWA_AGENT_MIN_BALANCE_WEI_1": "0"}
    world.node.rpc("anvil_setBalance", a, DUST)
    try:
        async with running(world, agent=False) as tasks:
            first = agent_process(world, extra_env=env)
            try:
                ops = await world.wait_ops(
                    lambda o: all(o[r]["state"] == "SIGNED" and o[r]["last_error"] for r in refs), tasks=tasks
                )
            finally:
                first.send_signal(signal.SIGTERM)
                assert await _wait_exit(first, 30) == 0
            stuck = ops["test:stuck"]
            assert await _cancel(world, ids["test:stuck"], "underfunded") == "REPLACED"
            world.node.rpc("anvil_setBalance", a, saved)
            crashing = agent_process(world, crash_at=point, extra_env=env)
            assert await _wait_exit(crashing) == -signal.SIGKILL
            op = (await world.ops())["test:stuck"]
            assert op["state"] == "REPLACED" and op["tx_hash"] not in op["tx_hashes"]  # the cancel tx, stored
            on_node = world.node.rpc("eth_getTransactionByHash", op["tx_hash"])
            if point == "after_cancel_sign":
                assert on_node is None  # stored, never sent
            else:
                assert on_node is not None  # sent, but the row does not say so
                assert op["broadcast_at"] is None
            restarted = agent_process(world, extra_env=env)
            try:
                ops = await world.wait_ops(
                    lambda o: o["test:stuck"]["state"] == "CANCELED" and o["test:after"]["state"] == "CONFIRMED",
                    tasks=tasks,
                )
            finally:
                restarted.send_signal(signal.SIGTERM)
                assert await _wait_exit(restarted, 30) == 0
    finally:
        world.node.rpc("anvil_setBalance", a, saved)
    one_transfer_per_ref(world, ops, ["test:after"])
    assert ops["test:stuck"]["tx_hash"] == op["tx_hash"]  # the stored cancel tx, sent again: no second one
    filler = _self_transfer_at(world, a, stuck["nonce"])
    assert filler["hash"] == op["tx_hash"] and filler["to"].lower() == a.lower()


async def _status(w: World, address: str) -> Any:
    engine = create_async_engine(w.db_url, pool_size=2)
    try:
        [row] = [r for r in await collect(w.settings, engine, [1], NO_THRESHOLD) if r.address == address]
        return row
    finally:
        await engine.dispose()


async def _audits(w: World, op_id: uuid.UUID) -> int:
    engine = create_async_engine(w.db_url)
    try:
        async with AsyncSession(engine) as s:
            return int(
                await s.scalar(
                    select(func.count())
                    .select_from(AuditLog)
                    .where(AuditLog.action == "operation.cancel", AuditLog.target_id == str(op_id))
                )
                or 0
            )
    finally:
        await engine.dispose()


async def test_a_failing_compensation_keeps_the_cancel_open_until_it_succeeds(world: World) -> None:
    """The compensation runs in the transaction that makes the op CANCELED: while it raises, the op stays REPLACED
    with the error (the sender goes on with its other ops), and it is applied exactly once when it succeeds."""
    a = world.d.agent
    saved = world.node.rpc("eth_getBalance", a, "latest")
    applied: list[str] = []
    broken = {"on": True}

    async def on_failed(session: AsyncSession, op: Any, reason: str) -> None:
        if broken["on"]:
            raise RuntimeError("ledger unavailable")
        applied.append(op.business_ref)

    async def on_confirmed(session: AsyncSession, op: Any) -> None:
        return None

    handlers.register("test.", on_confirmed=on_confirmed, on_failed=on_failed)
    try:
        op_id = await world.enqueue_transfer("test:stuck", 10**18)
        world.node.rpc("anvil_setBalance", a, DUST)
        async with running(world, config=NO_THRESHOLD) as tasks:
            await world.wait_ops(lambda o: bool(o["test:stuck"]["last_error"]), tasks=tasks)
            assert await _cancel(world, op_id, "stuck") == "REPLACED"
            world.node.rpc("anvil_setBalance", a, saved)
            ops = await world.wait_ops(
                lambda o: "cancel handler failed" in (o["test:stuck"]["last_error"] or ""), tasks=tasks
            )
            assert ops["test:stuck"]["state"] == "REPLACED" and applied == []
            await world.enqueue_transfer("test:next", 10**18)  # the sender is not stalled by the broken handler
            await world.wait_ops(lambda o: o["test:next"]["state"] == "CONFIRMED", tasks=tasks)
            broken["on"] = False
            ops = await world.wait_ops(lambda o: o["test:stuck"]["state"] == "CANCELED", tasks=tasks)
    finally:
        handlers.unregister("test.")
        world.node.rpc("anvil_setBalance", a, saved)
    assert applied == ["test:stuck"]
    one_transfer_per_ref(world, ops, ["test:next"])


@contextlib.asynccontextmanager
async def stepping(w: World, config: AgentConfig) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """The agent's sender for the agent key, one pass (executor.iterate) per call: what a pass does, without a clock.
    (No indexer runs: nothing reaches CONFIRMED; the node's own finalized tag drives the cancel step.)"""
    handlers.load_effects()
    engine = create_async_engine(w.db_url, pool_size=2)
    signer = LocalSigner(AGENT_KEY)
    try:
        async with RpcClient([w.node.url], chain_id=1, timeout=10) as client, engine.connect() as conn:
            ctx = SenderContext(get_chain(1), client, signer, ("agent", "treasury"), conn, config)

            async def one_pass() -> int:
                return await iterate(ctx)

            yield one_pass
    finally:
        await engine.dispose()


async def test_a_canceling_op_counts_against_max_in_flight(world: World, compensations) -> None:  # type: ignore[no-untyped-def]
    """A REPLACED op holds its nonce and its own transaction may still land: with max_in_flight=1 the sender signs
    nothing else until that nonce is settled, then the next op takes the nonce after it."""
    a = world.d.agent
    saved = world.node.rpc("eth_getBalance", a, "latest")
    config = dataclasses.replace(NO_THRESHOLD, max_in_flight=1)
    first = await world.enqueue_transfer("test:stuck", 10**18)
    world.node.rpc("anvil_setBalance", a, DUST)
    try:
        async with stepping(world, config) as one_pass:
            await one_pass()
            stuck = (await world.ops())["test:stuck"]
            assert stuck["state"] == "SIGNED" and "insufficient funds" in stuck["last_error"]
            assert await _cancel(world, first, "underfunded") == "REPLACED"
            await world.enqueue_transfer("test:next", 10**18)
            await one_pass()
            await one_pass()
            ops = await world.ops()
            assert ops["test:stuck"]["state"] == "REPLACED"
            assert ops["test:next"]["state"] == "PENDING" and ops["test:next"]["nonce"] is None
            world.node.rpc("anvil_setBalance", a, saved)
            for _ in range(40):  # the cancel tx is mined, then final 8 blocks later (anvil slots_in_an_epoch=4)
                await one_pass()
                world.node.mine(1)
                ops = await world.ops()
                if ops["test:next"]["state"] == "MINED":
                    break
    finally:
        world.node.rpc("anvil_setBalance", a, saved)
    assert ops["test:stuck"]["state"] == "CANCELED" and ops["test:next"]["state"] == "MINED"
    assert ops["test:next"]["nonce"] == stuck["nonce"] + 1
    assert compensations == [("test:stuck", "canceled: underfunded")]


async def test_a_cancel_behind_more_signed_ops_than_a_pass_resends_still_runs(world: World) -> None:
    """The resend read (RWA_AGENT_BATCH rows by nonce) also tells whether a cancel waits: a REPLACED op above that
    many refused SIGNED ones must still get its cancel tx signed."""
    a = world.d.agent
    saved = world.node.rpc("eth_getBalance", a, "latest")
    config = dataclasses.replace(NO_THRESHOLD, batch=1)
    await world.enqueue_transfer("test:low", 10**18)
    high = await world.enqueue_transfer("test:high", 10**18)
    world.node.rpc("anvil_setBalance", a, DUST)
    try:
        async with stepping(world, config) as one_pass:
            for _ in range(3):  # one op signed per pass (batch=1)
                await one_pass()
            ops = await world.ops()
            assert [ops[r]["state"] for r in ("test:low", "test:high")] == ["SIGNED", "SIGNED"]
            assert await _cancel(world, high, "wrong amount") == "REPLACED"
            await one_pass()
            op = (await world.ops())["test:high"]
    finally:
        world.node.rpc("anvil_setBalance", a, saved)
    assert op["state"] == "REPLACED" and op["tx_hash"] not in op["tx_hashes"]  # its cancel tx is signed
    assert "cancel tx refused" in op["last_error"]


async def test_the_canceling_gauge_counts_cancels_until_their_nonces_are_settled(world: World, compensations) -> None:  # type: ignore[no-untyped-def]
    """rwa_agent_canceling_operations: the sender's REPLACED ops whose nonce is not settled yet, read each pass; 0
    once their cancels are final (CANCELED)."""
    a = world.d.agent
    saved = world.node.rpc("eth_getBalance", a, "latest")
    refs = ["test:one", "test:two", "test:kept"]
    ids = {r: await world.enqueue_transfer(r, 10**18) for r in refs}
    world.node.rpc("anvil_setBalance", a, DUST)
    try:
        async with stepping(world, NO_THRESHOLD) as one_pass:
            for _ in range(5):  # all three signed, each refused by the node (no funds for gas)
                await one_pass()
                if all(o["state"] == "SIGNED" for o in (await world.ops()).values()):
                    break
            assert [o["state"] for o in (await world.ops()).values()] == ["SIGNED"] * 3
            assert metrics.CANCELING.labels("1", a)._value.get() == 0
            assert await _cancel(world, ids["test:one"], "wrong amount") == "REPLACED"
            await one_pass()
            assert metrics.CANCELING.labels("1", a)._value.get() == 1
            assert await _cancel(world, ids["test:two"], "wrong amount") == "REPLACED"
            await one_pass()
            assert metrics.CANCELING.labels("1", a)._value.get() == 2
            world.node.rpc("anvil_setBalance", a, saved)
            for _ in range(40):  # the cancel txs are mined, then final 8 blocks later (anvil slots_in_an_epoch=4)
                await one_pass()
                world.node.mine(1)
                ops = await world.ops()
                if ops["test:one"]["state"] == ops["test:two"]["state"] == "CANCELED":
                    break
            assert metrics.CANCELING.labels("1", a)._value.get() > 0  # set before this pass's cancel step ran
            await one_pass()
            assert metrics.CANCELING.labels("1", a)._value.get() == 0
    finally:
        world.node.rpc("anvil_setBalance", a, saved)
    assert [ops[r]["state"] for r in refs[:2]] == ["CANCELED", "CANCELED"]
    assert sorted(compensations) == [("test:one", "canceled: wrong amount"), ("test:two", "canceled: wrong amount")]
