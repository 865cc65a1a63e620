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


async def test_remote_signer_end_to_end(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """AGENT_SIGNER_URL: the node's eth_signTransaction signs (as Web3Signer/Clef would); no local key is used."""
    monkeypatch.setenv("AGENT_SIGNER_URL", world.node.url)
    monkeypatch.setenv("AGENT_SIGNER_ADDRESS", world.d.agent)
    await world.enqueue_transfer("test:remote", 3 * 10**18)
    async with running(world) as tasks:
        ops = await world.wait_ops(lambda o: o["test:remote"]["state"] == "CONFIRMED", tasks=tasks)
    assert ops["test:remote"]["sender"] == world.d.agent
    assert len(world.transfers_on_chain()) == 1


def _status(world: World) -> tuple[int, dict]:
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "TREASURY_", "RPC_URLS_"))}
    env.update(
        DATABASE_URL=world.db_url,
        REDIS_URL=world.settings.redis_url or "",
        RPC_URLS_1=world.node.url,
        AGENT_PRIVATE_KEY="0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        RWA_DATA_DIR="/tmp/rwa-agent-status-test",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "agent", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout)


async def test_status_json_reports_and_fails_when_out_of_gas(world: World) -> None:
    await world.enqueue_transfer("test:status", 10**18)
    code, body = _status(world)
    assert code == 0 and body["healthy"] is True
    (row,) = body["signers"]
    assert row["address"] == world.d.agent and row["roles"] == ["agent", "treasury"]
    assert row["pending"] == 1 and row["oldest_pending_age_s"] >= 0 and row["sender_running"] is False
    assert row["next_nonce"] == int(
        world.node.rpc("eth_getTransactionCount", world.d.agent, "pending"), 16
    ) and isinstance(row["next_nonce"], int)
    saved = world.node.rpc("eth_getBalance", world.d.agent, "latest")
    world.node.rpc("anvil_setBalance", world.d.agent, "0x1")
    try:
        code, body = _status(world)
    finally:
        world.node.rpc("anvil_setBalance", world.d.agent, saved)
    assert code == 1 and body["healthy"] is False
    assert body["signers"][0]["gas_balance_wei"] == "1" and "gas balance" in body["signers"][0]["problems"][0]


async def test_a_failing_handler_holds_back_only_its_own_operation(world: World) -> None:
    """Confirmations run as one batch; a handler that raises rolls that back and the batch is redone op by op:
    the others confirm, the failing one stays MINED with the error until its handler succeeds (exactly once)."""
    broken = {"on": True}
    seen: list[str] = []

    async def on_confirmed(session, op) -> None:  # type: ignore[no-untyped-def]
        from models.identity import AuditLog

        # a domain effect in the confirming transaction (rolled back with it when the batch is redone)
        session.add(AuditLog(action="test.effect", target_type="op", target_id=op.business_ref, details={}))
        await session.flush()
        if op.business_ref == "test:h:1" and broken["on"]:
            raise RuntimeError("domain bug")
        seen.append(op.business_ref)

    handlers.register("test.", on_confirmed=on_confirmed)
    try:
        refs = [f"test:h:{i}" for i in range(4)]
        for ref in refs:
            await world.enqueue_transfer(ref, 10**18)
        async with running(world) as tasks:
            ops = await world.wait_ops(
                lambda o: (
                    sum(o[r]["state"] == "CONFIRMED" for r in refs) == 3 and o["test:h:1"]["last_error"] is not None
                ),
                tasks=tasks,
            )
            assert ops["test:h:1"]["state"] == "MINED"
            assert "domain bug" in ops["test:h:1"]["last_error"]
            broken["on"] = False
            ops = await world.wait_ops(lambda o: o["test:h:1"]["state"] == "CONFIRMED", tasks=tasks)
    finally:
        handlers.unregister("test.")
    effects = await world.sql("SELECT target_id, count(*) FROM audit_log WHERE action = 'test.effect' GROUP BY 1")
    assert sorted((r[0], r[1]) for r in effects) == [(r, 1) for r in sorted(refs)]  # each effect exactly once
    assert set(seen) == set(refs)


async def test_a_stopped_sender_releases_its_lock_before_its_connection_returns_to_the_pool(world: World) -> None:
    """A sender stopped inside a running process (a deposit key whose sweeps are done, a lost connection) must not
    leave its advisory lock on a pooled connection: no other process could ever send for that address."""
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    from agent.executor import SenderSpec, run_sender
    from agent.signers import LocalSigner
    from chains.rpc import RpcClient
    from tests.agent.conftest import AGENT_KEY, FAST

    engine = create_async_engine(world.db_url, pool_size=2)
    held = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::bigint::oid "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )  # server-wide view
    try:
        async with RpcClient([world.node.url], chain_id=1) as client:
            task = asyncio.create_task(
                run_sender(engine, client, SenderSpec(1, LocalSigner(AGENT_KEY), ("agent",)), FAST, asyncio.Event())
            )
            for _ in range(200):
                if (await world.sql(held, 0x52574132))[0][0] == 1:
                    break
                await asyncio.sleep(0.05)
            assert (await world.sql(held, 0x52574132))[0][0] == 1
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert (await world.sql(held, 0x52574132))[0][0] == 0  # engine alive, pool kept: lock released
    finally:
        await engine.dispose()
