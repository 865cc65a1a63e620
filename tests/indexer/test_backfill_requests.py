"""`rwa index backfill` next to a running indexer (issue 13, item 5): the range is handed to the process
holding the chain's writer lock as a backfill request, executed in slices between follow steps, with
progress on the request row; the waiting CLI reports it, takes over when no writer is left, and cancels
the request on Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import asyncpg

from chains.anvil import AnvilNode
from chains.registry import get_chain
from core.settings import Settings
from indexer import backfill_requests, lock
from indexer.chainstate import read_heads
from indexer.fetch import make_ranger
from indexer.lock import asyncpg_dsn
from indexer.service import make_client, run_indexer
from indexer.write import ensure_cursor, prepare_connection
from tests.indexer.cli_helpers import REPO, RWA, run_rwa, rwa_env
from tests.indexer.conftest import (
    TEST_CONFIG,
    add_tokens,
    assert_matches_chain,
    deploy,
    snapshot,
    table_rows,
    wait_at_head,
)
from tests.indexer.scenario import run_scenario

REQUESTS = "SELECT id, state, blocks_done, blocks_total, events, error FROM indexer_backfill_requests ORDER BY id"
CLI_ENV = {"RWA_INDEXER_LOCK_RETRY_S": "0.2", "RWA_FINALITY_DEPTH_1": "8"}


async def _story(node: AnvilNode, idx_db: str):  # type: ignore[no-untyped-def]
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    await run_scenario(d)
    node.mine(12)  # the scenario's blocks are finalized
    return d


async def _wait_state(idx_db: str, request_id: int, states: tuple[str, ...], timeout: float = 30) -> tuple:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = {r[0]: r for r in await table_rows(idx_db, REQUESTS)}
        if request_id in rows and rows[request_id][1] in states:
            return rows[request_id]
        assert asyncio.get_running_loop().time() < deadline, f"request {request_id}: {rows.get(request_id)}"
        await asyncio.sleep(0.05)


async def test_executor_works_in_slices_and_resumes(
    node: AnvilNode, settings: Settings, idx_db: str, indexer_template_db: str
) -> None:
    """The writer's side: tiny slices (one batch each), progress after each, the same rows as a backfill."""
    d = await _story(node, idx_db)
    spec = get_chain(1)
    config = TEST_CONFIG.__class__(**{**TEST_CONFIG.__dict__, "batch_events": 3, "logs_per_call": 2})
    conn = await lock.connect(idx_db, 1)
    try:
        assert await lock.try_lock(conn, 1)
        await prepare_connection(conn)
        await ensure_cursor(conn, 1, d.start_block - 1)
        req = await backfill_requests.submit(conn, 1, 0, None, None)
        async with make_client(settings, 1, config) as client:
            heads = await read_heads(client, spec, 8)
            ranger = make_ranger(spec, 2)
            slices, seen = 0, []
            while True:
                worked = await backfill_requests.execute(
                    conn, client, 1, config, ranger, finalized=heads.finalized, ceiling=heads.finalized, budget_s=0.0
                )
                now = await backfill_requests.get(conn, req.id)
                assert now is not None
                seen.append((now.state, now.blocks_done))
                if not worked or now.finished:
                    break
                slices += 1
        assert now.state == "DONE" and now.to_block == heads.finalized
        assert now.blocks_done == now.blocks_total == heads.finalized - d.start_block + 1
        assert slices > 3 and all(s == "RUNNING" for s, _ in seen[:-1])
        assert [b for _, b in seen] == sorted(b for _, b in seen)  # progress only grows
        assert now.events == (await table_rows(idx_db, "SELECT count(*) FROM chain_events"))[0][0] > 20
        # nothing left: a second request for the same range is DONE at once, scanning nothing
        again = await backfill_requests.submit(conn, 1, 0, heads.finalized, None)
        async with make_client(settings, 1, config) as client:
            assert await backfill_requests.execute(
                conn, client, 1, config, ranger, finalized=heads.finalized, ceiling=heads.finalized
            )
        done = await backfill_requests.get(conn, again.id)
        assert done is not None and (done.state, done.blocks_total, done.events) == ("DONE", 0, 0)
        # an unknown token fails the request with the reason, instead of stopping the writer
        bad = await backfill_requests.submit(conn, 1, 0, None, "0x" + "ab" * 20)
        async with make_client(settings, 1, config) as client:
            await backfill_requests.execute(
                conn, client, 1, config, ranger, finalized=heads.finalized, ceiling=heads.finalized
            )
        failed = await backfill_requests.get(conn, bad.id)
        assert failed is not None and failed.state == "FAILED" and "not registered" in (failed.error or "")
    finally:
        await conn.close()
    await assert_matches_chain(idx_db, 1, d)


async def test_cli_backfill_beside_a_running_indexer(
    node: AnvilNode, settings: Settings, idx_db: str, redis_url: str
) -> None:
    d = await _story(node, idx_db)
    stop = asyncio.Event()
    task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=TEST_CONFIG))
    try:
        await wait_at_head(idx_db, 1, node, task=task)
        # the range is indexed already: the running writer still answers the request, and keeps following
        # (the CLI runs in a thread: this event loop drives the indexer meanwhile)
        waited = await asyncio.to_thread(
            run_rwa,
            ["backfill", "--chain", "1", "--from-block", str(d.start_block)],
            idx_db,
            redis_url,
            {1: node.url},
            60,
            CLI_ENV,
        )
        assert waited.code == 0, waited.output
        assert "another indexer process holds the writer lock" not in waited.output
        assert "backfill done by the running indexer" in waited.output
        filed = await asyncio.to_thread(
            run_rwa,
            ["backfill", "--chain", "1", "--from-block", "0", "--no-wait", "--token", d.stack.token.address.lower()],
            idx_db,
            redis_url,
            {1: node.url},
            60,
            CLI_ENV,
        )
        assert filed.code == 0 and "filed" in filed.output, filed.output
        rows = await table_rows(idx_db, REQUESTS)
        assert [r[1] for r in rows][0] == "DONE" and len(rows) == 2
        await _wait_state(idx_db, rows[1][0], ("DONE",))
        status = await asyncio.to_thread(
            run_rwa, ["status", "--json", "--chain", "1"], idx_db, redis_url, {1: node.url}
        )
        assert status.code == 0, status.output
        chain = status.json()["chains"][0]
        assert chain["state"] == "ok" and [b["state"] for b in chain["backfills"]] == ["DONE", "DONE"]
        node.mine(3)
        await wait_at_head(idx_db, 1, node, task=task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    await assert_matches_chain(idx_db, 1, d)


async def test_waiting_cli_takes_over_when_the_writer_goes_and_cancels_on_ctrl_c(
    node: AnvilNode, idx_db: str, redis_url: str, indexer_template_db: str
) -> None:
    d = await _story(node, idx_db)
    before = await snapshot(idx_db)
    holder = await asyncpg.connect(asyncpg_dsn(idx_db))  # a writer that never executes requests
    assert await holder.fetchval("SELECT pg_try_advisory_lock($1, 1)", lock.LOCK_CLASS)
    args = [RWA, "index", "backfill", "--chain", "1", "--from-block", str(d.start_block)]
    env = rwa_env(idx_db, redis_url, {1: node.url}, CLI_ENV)
    # 1. Ctrl-C while waiting: the request is cancelled, nothing was written, exit 130
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await _wait_state(idx_db, 1, ("PENDING",))
        proc.send_signal(signal.SIGINT)
        out, errs = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + errs
    assert (await _wait_state(idx_db, 1, ("CANCELLED",)))[1] == "CANCELLED"
    assert await snapshot(idx_db) == before
    # 2. the lock holder goes away while the CLI waits: the CLI executes its own request
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await _wait_state(idx_db, 2, ("PENDING",))
        await holder.close()
        out, errs = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if not holder.is_closed():
            await holder.close()
    assert proc.returncode == 0, out + errs
    assert "backfill done" in errs
    row = await _wait_state(idx_db, 2, ("DONE",))
    assert row[2] == row[3] > 0 and row[4] > 20
    await assert_matches_chain(idx_db, 1, d)
