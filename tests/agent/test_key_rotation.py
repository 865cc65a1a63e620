"""Rotating a signer key while operations of the old key hold its nonces (SIGNED, BROADCAST): no configured signer
can send, replace or cancel them any more. They are named as orphaned (`rwa agent status`, the
rwa_agent_orphaned_operations gauge, the agent's readiness JSON) and go through once the old key is configured
again, on a real anvil node with the real indexer."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from eth_account import Account
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine

from agent import metrics
from agent.ops import readiness
from agent.status import collect
from core.ops_server import Heartbeat
from core.settings import Settings
from tests.agent.conftest import World, running
from tests.agent.test_cancel_signed import DUST, NO_THRESHOLD
from tests.agent.test_faults import one_transfer_per_ref

pytestmark = pytest.mark.timeout(300)

NEW_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"  # anvil account 5
NEW_ADDRESS = Account.from_key(NEW_KEY).address


async def _status(settings: Settings, w: World) -> list[Any]:
    engine = create_async_engine(w.db_url, pool_size=2)
    try:
        return await collect(settings, engine, [1], NO_THRESHOLD)
    finally:
        await engine.dispose()


async def _until(pred: Any, tasks: tuple[asyncio.Task[Any], ...], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        for t in tasks:
            if t.done():
                t.result()
                raise AssertionError(f"{t.get_name()} ended early")
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


def _orphaned_gauge(address: str) -> float:
    return metrics.ORPHANED.labels("1", address)._value.get()


@pytest.mark.parametrize("state", ["SIGNED", "BROADCAST"])
async def test_an_op_of_a_rotated_out_key_is_orphaned_until_the_key_is_back(
    world: World, state: str, caplog: pytest.LogCaptureFixture
) -> None:
    old = world.d.agent
    saved = world.node.rpc("eth_getBalance", old, "latest")
    await world.enqueue_transfer("test:inflight", 10**18)
    if state == "SIGNED":
        world.node.rpc("anvil_setBalance", old, DUST)  # the node refuses it: it stays SIGNED at its nonce
    else:
        world.node.set_automine(False)  # sent, it waits in the pool: BROADCAST
    rotated = dataclasses.replace(
        world, settings=world.settings.model_copy(update={"agent_private_key": SecretStr(NEW_KEY)})
    )
    try:
        async with running(world, config=NO_THRESHOLD, miner=False) as tasks:
            first = (
                await world.wait_ops(
                    lambda o: (
                        o["test:inflight"]["state"] == state
                        and (state == "BROADCAST" or bool(o["test:inflight"]["last_error"]))
                    ),
                    tasks=tasks,
                )
            )["test:inflight"]
        assert first["sender"] == old
        # the sender stopped: its counts do not stay behind on /metrics
        assert metrics.REFUSED.labels("1", old)._value.get() == 0

        # the agent and treasury keys rotate to account 5 while the op holds a nonce of account 0
        caplog.set_level(logging.ERROR, logger="rwa.agent")
        async with running(rotated, config=NO_THRESHOLD, miner=False) as tasks:
            await _until(lambda: _orphaned_gauge(old) == 1, tasks)
            await asyncio.sleep(6)  # the chain loop looks again (every 5 s): still one, still logged once
            assert _orphaned_gauge(old) == 1
            logged = [r for r in caplog.records if "no configured signer" in r.getMessage()]
            assert len(logged) == 1 and old in logged[0].getMessage()

            ok, details = readiness(Heartbeat())()
            assert ok  # nothing this process sends for is short of gas: orphans are reported, not a readiness fault
            assert [o for o in details["orphaned"] if o["chainId"] == 1] == [
                {
                    "chainId": 1,
                    "address": old,
                    "operations": 1,
                    "reason": "no configured signer has this address any more (key rotated?): its operations wait",
                }
            ]
            assert [(s["role"], s["refused"], s["canceling"]) for s in details["signers"] if s["address"] == old] == [
                ("standby", 0, 0)
            ]

            rows = await _status(rotated.settings, world)
            [row] = [r for r in rows if r.address == NEW_ADDRESS]
            assert row.roles == ["agent", "treasury"] and not row.healthy
            assert [(o["businessRef"], o["state"], o["sender"], o["nonce"]) for o in row.orphaned] == [
                ("test:inflight", state, old, first["nonce"])
            ]
            assert row.refused == [] and row.canceling == []  # listed once, as what it is
            [problem] = [p for p in row.problems if "test:inflight" in p]
            assert problem.startswith(f"{state} operation test:inflight (id {first['id']}) holds nonce")
            assert f"of {old}, which no configured signer has any more" in problem
            assert (await world.ops())["test:inflight"]["state"] == state  # nothing moved it
        assert _orphaned_gauge(old) == 0  # the agent stopped: it no longer names them

        # the old key is configured again (here as the agent key): the op goes through, nothing is orphaned
        world.node.rpc("anvil_setBalance", old, saved)
        world.node.set_automine(True)
        async with running(world) as tasks:
            ops = await world.wait_ops(lambda o: o["test:inflight"]["state"] == "CONFIRMED", tasks=tasks)
            assert _orphaned_gauge(old) == 0
            ok, details = readiness(Heartbeat())()
            assert [o for o in details["orphaned"] if o["chainId"] == 1] == []
        rows = await _status(world.settings, world)
        [row] = [r for r in rows if r.address == old]
        assert row.orphaned == [] and row.healthy, row.problems
    finally:
        world.node.set_automine(True)
        world.node.rpc("anvil_setBalance", old, saved)
    assert ops["test:inflight"]["nonce"] == first["nonce"]  # the same nonce: its own transaction landed
    one_transfer_per_ref(world, ops, ["test:inflight"])
