"""Two indexer processes for one chain: only the holder of the chain's advisory lock writes; the
standby takes over when the leader is killed."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from chains.anvil import AnvilNode
from chains.deploy import transact
from indexer.lock import LOCK_CLASS
from tests.indexer.conftest import add_tokens, assert_matches_chain, deploy, table_rows, wait_synced
from tests.indexer.scenario import E18
from tests.indexer.test_crash import start_indexer

HOLDER_SQL = """
SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = $1::bigint::oid AND l.objid = 1 AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
APPS_SQL = "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"


async def _wait_for(cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_only_the_lock_holder_writes_and_the_standby_takes_over(
    node: AnvilNode, idx_db: str, tmp_path: Path
) -> None:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    token, registry = d.stack.token, d.stack.registry
    a1, a2 = d.accounts[1], d.accounts[2]
    for w in (a1, a2):
        await transact(registry.functions.registerIdentity(w, w, 250), d.agent)
    await transact(token.functions.mint(a1, 100 * E18), d.agent)

    log = tmp_path / "indexers.log"
    leader = start_indexer(idx_db, node.url, log)
    standby = None
    try:
        app_a = f"rwa-indexer:1:{leader.pid}"

        async def holder() -> list[str]:
            return [r[0] for r in await table_rows(idx_db, HOLDER_SQL, LOCK_CLASS)]

        await _wait_for(lambda: _eq(holder, [app_a]))
        standby = start_indexer(idx_db, node.url, log)
        app_b = f"rwa-indexer:1:{standby.pid}"

        async def standby_connected() -> bool:
            return app_b in [r[0] for r in await table_rows(idx_db, APPS_SQL)]

        await _wait_for(standby_connected)
        for _ in range(3):
            await transact(token.functions.transfer(a2, E18), a1)
            await wait_synced(idx_db, {1: node})
            assert await holder() == [app_a]  # the standby polls but never gets the lock
        await assert_matches_chain(idx_db, 1, d)

        os.kill(leader.pid, signal.SIGKILL)
        leader.wait()
        await _wait_for(lambda: _eq(holder, [app_b]))
        for _ in range(3):
            await transact(token.functions.transfer(a2, E18), a1)
        await wait_synced(idx_db, {1: node})
        await assert_matches_chain(idx_db, 1, d)
        (n,) = (await table_rows(idx_db, "SELECT count(*) FROM token_transfers"))[0]
        assert n == 7  # mint + 6 transfers, none twice
    finally:
        for proc in (leader, standby):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


async def _eq(fn, expected) -> bool:  # type: ignore[no-untyped-def]
    return await fn() == expected
