"""kill -9 during a backfill, several times, then resume: the final state equals an uninterrupted run."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from chains.anvil import AnvilNode
from chains.loadgen import load_recipients, prepare_security_token_load, send_batch_transfers
from core.settings import Settings
from indexer.service import run_indexer
from tests.indexer.conftest import (
    TEST_CONFIG,
    _url,
    add_tokens,
    assert_matches_chain,
    clone_db,
    cursor_block,
    deploy,
    drop_db,
    snapshot,
    table_rows,
    wait_synced,
)
from tests.indexer.scenario import run_scenario

REPO = Path(__file__).resolve().parents[2]
# Small batches: while behind, up to COMMIT_BATCHES of them share a commit (800 events here, ~6% of the chain), so a
# run killed soon after its first commit is still mid-backfill. With 300 (2,400 per commit) a fast run once
# indexed to the head before its third kill.
BATCH_EVENTS = 100


def start_indexer(db_url: str, rpc_url: str, log: Path, until: int | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tests.indexer.indexer_proc", db_url, rpc_url, "--batch-events", str(BATCH_EVENTS)]
    if until is not None:
        cmd += ["--until", str(until)]
    with open(log, "ab") as out:  # a file, not a pipe: a full pipe would block the child
        return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=out)


async def test_kill_9_mid_backfill_then_resume_equals_uninterrupted_run(
    node: AnvilNode, idx_db: str, indexer_template_db: str, monkeypatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "indexer.log"
    d = await deploy(node.url)
    recipients = load_recipients(100)
    await prepare_security_token_load(d.w3, d.stack, d.agent, recipients, supply=10**24)
    # 12,000 Transfers, one tx per block (rpc_batch=1), so the backfill is many small batches
    await send_batch_transfers(node.url, d.stack.token.address, d.agent, recipients, txs=120, rpc_batch=1)
    await run_scenario(d)
    head = node.block_number()

    # the reference: one uninterrupted in-process run, same batch sizes as the subprocess
    ref_name = await clone_db(indexer_template_db)
    ref_url = _url(ref_name)
    try:
        await add_tokens(ref_url, 1, d)
        monkeypatch.setenv("RPC_URLS_1", node.url)
        settings = Settings(DATABASE_URL=ref_url, REDIS_URL=None)  # type: ignore[call-arg]
        stop = asyncio.Event()
        cfg = TEST_CONFIG.__class__(
            **{
                **TEST_CONFIG.__dict__,
                "batch_events": BATCH_EVENTS,
                "logs_per_call": BATCH_EVENTS // 2,
                "initial_span": 5,
            }
        )
        task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=cfg))
        await wait_synced(ref_url, {1: node}, timeout=60, task=task)
        stop.set()
        await asyncio.wait_for(task, 10)
        expected = await snapshot(ref_url)
    finally:
        await drop_db(ref_name)
    assert len(expected["token_transfers"]) > 12000

    await add_tokens(idx_db, 1, d)
    progress: list[int] = []
    rng = random.Random(7)
    for _ in range(3):
        before = await cursor_block(idx_db, 1) or -1
        proc = start_indexer(idx_db, node.url, log)
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while (await cursor_block(idx_db, 1) or -1) <= before:  # wait for a committed batch
                assert proc.poll() is None, log.read_text()[-3000:]
                if asyncio.get_running_loop().time() > deadline:
                    activity = await table_rows(
                        idx_db,
                        "SELECT application_name, state, wait_event, query FROM pg_stat_activity WHERE datname = current_database()",
                    )
                    raise AssertionError((progress, activity, log.read_text()[-3000:]))
                await asyncio.sleep(0.02)
            await asyncio.sleep(rng.uniform(0.0, 0.05))  # then die at an arbitrary point
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        progress.append(await cursor_block(idx_db, 1) or -1)
    assert progress == sorted(progress) and progress[-1] < head, progress  # killed mid-backfill each time

    proc = start_indexer(idx_db, node.url, log, until=head)
    try:
        await asyncio.wait_for(asyncio.to_thread(proc.wait), 60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    got = await snapshot(idx_db)
    for table in expected:
        assert got[table] == expected[table], table
    await assert_matches_chain(idx_db, 1, d, extra_holders=tuple(recipients[:5]))
