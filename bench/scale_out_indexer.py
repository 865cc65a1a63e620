"""bench/scale_out.py's indexer scenario: two `rwa index run` on one anvil chain under traffic, the writer killed
with SIGKILL, the standby taking over, and the index verified against balanceOf afterwards."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.harness import free_port
from bench.scale_out_cluster import REPO, RWA


def _indexer(env: dict[str, str], workdir: Path, name: str, ops_port: int) -> subprocess.Popen[bytes]:
    log = open(workdir / f"{name}.log", "ab")
    return subprocess.Popen(
        [RWA, "index", "run", "--chain", "1", "--metrics-port", str(ops_port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _role(ops_port: int) -> str | None:
    try:
        body = httpx.get(f"http://127.0.0.1:{ops_port}/readyz", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    return body.get("chains", {}).get("1", {}).get("role")


async def indexer_takeover(db_url: str, workdir: Path, env: dict[str, str], traffic_s: float) -> dict[str, Any]:
    import asyncpg
    from eth_utils import to_checksum_address

    from bench.indexer_soak import check, wait_caught_up
    from chains.anvil import AnvilNode
    from chains.deploy import connect, deploy_rwa_stack, transact
    from indexer.lock import asyncpg_dsn

    e18 = 10**18
    with AnvilNode(1) as node:
        w3 = connect(node.url)
        accounts = list(await w3.eth.accounts)
        start = await w3.eth.block_number + 1
        stack = await deploy_rwa_stack(w3, accounts[0])
        agent, wallets = accounts[0], accounts[1:5]
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        for address, kind, registry in (
            (stack.token.address, "SECURITY", stack.registry.address),
            (stack.stablecoin.address, "STABLECOIN", None),
        ):
            await conn.execute(
                "INSERT INTO tokens (id, chain_id, address, kind, name, symbol, decimals, total_supply, paused, "
                "identity_registry, start_block) VALUES ($1, 1, $2, $3, 'Scale', 'SCL', 18, 0, false, $4, $5)",
                uuid.uuid4(),
                address,
                kind,
                registry,
                start,
            )
        await conn.close()
        for i, w in enumerate(wallets):
            await transact(
                stack.registry.functions.registerIdentity(w, to_checksum_address(f"0x{0x2D000 + i:040x}"), 250), agent
            )
            await transact(stack.token.functions.mint(w, 1_000 * e18), agent)
            await transact(stack.stablecoin.functions.mint(w, 10**12), agent)
        if await stack.token.functions.paused().call():
            await transact(stack.token.functions.unpause(), agent)
        ienv = {**env, "RPC_URLS_1": node.url}
        ports = [free_port(), free_port()]
        procs = [_indexer(ienv, workdir, f"indexer{i}", p) for i, p in enumerate(ports)]
        rng = random.Random(2)
        sent = 0
        try:
            deadline = time.monotonic() + 120
            while not any(_role(p) == "writer" for p in ports):
                assert all(p.poll() is None for p in procs), "an indexer exited"
                assert time.monotonic() < deadline, "no indexer became writer"
                await asyncio.sleep(0.2)
            leader = next(i for i, p in enumerate(ports) if _role(p) == "writer")
            standby = 1 - leader
            assert _role(ports[standby]) == "standby"

            async def traffic(seconds: float) -> None:
                nonlocal sent
                until = time.monotonic() + seconds
                while time.monotonic() < until:
                    a, b = rng.sample(wallets, 2)
                    await transact(stack.token.functions.transfer(b, rng.randint(1, 5) * e18), a)
                    sent += 1
                    await asyncio.sleep(0.05)

            await traffic(traffic_s / 2)
            os.killpg(procs[leader].pid, signal.SIGKILL)  # the writer dies mid-stream
            killed = time.monotonic()
            procs[leader].wait()
            load = asyncio.create_task(traffic(traffic_s / 2))  # the chain goes on while the standby takes over
            while _role(ports[standby]) != "writer":
                assert procs[standby].poll() is None, "the standby exited"
                assert time.monotonic() - killed < 60, "the standby did not take over within 60 s"
                await asyncio.sleep(0.05)
            takeover = time.monotonic() - killed
            await load

            class _Task:  # wait_caught_up watches an in-process task; here the standby process stands in for it
                def done(self) -> bool:
                    return procs[standby].poll() is not None

                def result(self) -> None:
                    raise RuntimeError("the standby exited")

            await wait_caught_up(db_url, node, _Task(), timeout=120)  # type: ignore[arg-type]
            problems = await check(db_url, node.url, stack, wallets)
            head = node.block_number()
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
                    try:
                        p.wait(20)
                    except subprocess.TimeoutExpired:
                        os.killpg(p.pid, signal.SIGKILL)
    return {
        "takeover_s": round(takeover, 2),
        "transfers": sent,
        "head": head,
        "verify_ok": not problems,
        "problems": problems[:10],
    }
