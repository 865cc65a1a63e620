"""Benchmark: the on-chain agent settling N transfers end to end on one anvil chain, next to a plain script.

One run, one anvil node (automine; a block producer also mines every --block-interval s so finality advances;
anvil: finalized = head - 8), a fresh database, the RWA stack deployed by anvil account 0 (the agent):
1. raw: a plain script signs N forcedTransfer txs at consecutive nonces, sends them with eth_sendRawTransaction in
   JSON-RPC batches and polls receipts in batches until all are mined: transfers/s (signing excluded, and included);
2. agent: N `settlement.transfer`-shaped operations enqueued through the outbox in one transaction (a burst of
   matched trades), `rwa index run` and `rwa agent run` as child processes; until every op is CONFIRMED:
   settled/s (N / (last CONFIRMED - commit of the enqueue)), mined/s, latency commit->CONFIRMED p50/p99, and
   latency from the moment the op's block became final on the node (finalized tag, polled every 20 ms) to
   CONFIRMED p50/p99; the enqueue's own duration and the agent's time per step are reported too;
3. checks: every op CONFIRMED, exactly N Transfer logs and N agent nonces used in the agent phase (no double send);
4. gas per settled transfer: forcedTransfer (mean gas used) vs a batched forcedTransfer (a bench-only variant of
   SecurityToken.vy compiled in-process with vyper, a dev dependency; skipped without it), 50 per tx.

    .venv/bin/python -m bench.agent_settlement --transfers 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.calls import encode_call  # noqa: E402
from agent.signers import LocalSigner  # noqa: E402
from bench.harness import REDIS_URL, scratch_database  # noqa: E402
from chains.anvil import AnvilNode  # noqa: E402
from chains.deploy import connect, deploy_rwa_stack, transact  # noqa: E402
from chains.rpc import RpcClient  # noqa: E402
from indexer.lock import asyncpg_dsn  # noqa: E402

AGENT_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
INVESTORS = 10  # accounts 1..10: sellers and buyers in turn
BATCH = 200


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def transfers(accounts: list[str], n: int, unit: int) -> list[tuple[str, str, int]]:
    inv = accounts[1:1 + INVESTORS]
    return [(inv[i % len(inv)], inv[(i + 1) % len(inv)], unit) for i in range(n)]


async def setup(url: str, db_url: str) -> tuple[Any, list[str], int]:
    w3 = connect(url)
    accounts = list(await w3.eth.accounts)
    start = await w3.eth.block_number + 1
    stack = await deploy_rwa_stack(w3, accounts[0])
    for inv in accounts[1:1 + INVESTORS]:
        await transact(stack.registry.functions.registerIdentity(inv, inv, 840), accounts[0])
        await transact(stack.token.functions.mint(inv, 10**24), accounts[0])
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute(
            "INSERT INTO tokens (id, chain_id, address, kind, name, symbol, decimals, total_supply, paused, "
            "identity_registry, start_block) VALUES (gen_random_uuid(), 1, $1, 'SECURITY', 'Bench', 'BNCH', 18, 0, "
            "false, $2, $3)", stack.token.address, stack.registry.address, start)
    finally:
        await conn.close()
    return stack, accounts, start


async def raw_script(url: str, token: str, moves: list[tuple[str, str, int]]) -> dict[str, float]:
    """The plain baseline: sign, eth_sendRawTransaction in batches, receipts in batches."""
    signer = LocalSigner(AGENT_KEY)
    async with RpcClient([url], chain_id=1, batch_size=BATCH, timeout=60) as client:
        nonce = int(await client.call("eth_getTransactionCount", [signer.address, "pending"]), 16)
        block = await client.call("eth_getBlockByNumber", ["latest", False])
        max_fee = 2 * int(block["baseFeePerGas"], 16) + 2 * 10**9
        t_sign = time.perf_counter()
        raws = []
        for i, (a, b, amt) in enumerate(moves):
            tx = {"chainId": 1, "nonce": nonce + i, "to": token, "value": 0, "gas": 150_000, "type": 2,
                  "data": encode_call("SecurityToken", "forcedTransfer", [a, b, str(amt)]),
                  "maxFeePerGas": max_fee, "maxPriorityFeePerGas": 2 * 10**9}
            raws.append(await signer.sign(tx))
        t0 = time.perf_counter()
        for i in range(0, len(raws), BATCH):
            await client.batch([("eth_sendRawTransaction", [r]) for r, _ in raws[i:i + BATCH]])
        pending = [h for _, h in raws]
        gas: list[int] = []
        while pending:
            rcpts = await client.batch([("eth_getTransactionReceipt", [h]) for h in pending])
            gas += [int(r["gasUsed"], 16) for r in rcpts if r]
            pending = [h for h, r in zip(pending, rcpts) if not r]
            if pending:
                await asyncio.sleep(0.01)
        t1 = time.perf_counter()
    n = len(moves)
    return {"raw_per_s": n / (t1 - t0), "raw_with_signing_per_s": n / (t1 - t_sign),
            "raw_gas_per_transfer": sum(gas) / len(gas)}


def child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(f"/tmp/rwa-bench-agent-{args[0]}.log", "wb")  # noqa: SIM115  (the child's stderr, kept for a failure)
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=log)


async def agent_run(node: AnvilNode, db_url: str, token: str, moves: list[tuple[str, str, int]],
                    block_interval: float) -> dict[str, Any]:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from agent.outbox import enqueue

    from chains.anvil import free_port

    mport = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "TREASURY_", "RPC_URLS_"))}
    env.update(DATABASE_URL=db_url, REDIS_URL=REDIS_URL, RPC_URLS_1=node.url, AGENT_PRIVATE_KEY=AGENT_KEY,
               RWA_AGENT_POLL_S="0.02", RWA_INDEXER_POLL_S="0.05", LOG_JSON="false", LOG_LEVEL="WARNING",
               RWA_DATA_DIR="/tmp/rwa-bench-agent", RWA_INDEXER_METRICS_PORT="0", RWA_AGENT_METRICS_PORT=str(mport))
    procs = [child(["index", "run", "--chain", "1"], env), child(["agent", "run", "--chain", "1"], env)]
    stop = asyncio.Event()
    final_at: dict[int, float] = {}  # block -> wall time it was first seen at or below the finalized tag
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        async with RpcClient([node.url], chain_id=1) as client:
            head = int(await client.call("eth_blockNumber"), 16)
            while (await conn.fetchval("SELECT indexed_block FROM indexer_cursors WHERE chain_id = 1") or -1) < head:
                await asyncio.sleep(0.05)
            # the agent is ready when it holds its sender lock (its imports take seconds on a busy machine)
            while not await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                          "AND database = (SELECT oid FROM pg_database "
                                          "WHERE datname = current_database()) "
                                          "AND classid = $1::bigint::oid", 0x52574132):
                await asyncio.sleep(0.05)
            nonce_before = int(await client.call("eth_getTransactionCount", [AGENT_ADDR, "latest"]), 16)

            async def watch_finality() -> None:
                last = -1
                while not stop.is_set():
                    b = await client.call("eth_getBlockByNumber", ["finalized", False])
                    n = int(b["number"], 16) if b else -1
                    now = time.time()
                    for k in range(last + 1, n + 1):
                        final_at[k] = now
                    last = max(last, n)
                    await asyncio.sleep(0.02)

            async def produce_blocks() -> None:
                while not stop.is_set():
                    await client.call("evm_mine")
                    await asyncio.sleep(block_interval)

            tasks = [asyncio.create_task(watch_finality()), asyncio.create_task(produce_blocks())]
            engine = create_async_engine(db_url)
            t_enqueue = time.time()
            async with AsyncSession(engine) as s:
                for i, (a, b, amt) in enumerate(moves):
                    await enqueue(s, kind="bench.transfer", chain_id=1, contract=token,
                                  abi_name="SecurityToken", function="forcedTransfer", args=[a, b, amt],
                                  business_ref=f"bench:{i}")
                await s.commit()
            await engine.dispose()
            t_committed = time.time()
            deadline = time.time() + float(os.environ.get("BENCH_TIMEOUT_S", "600"))
            while True:
                open_ = await conn.fetchval("SELECT count(*) FROM chain_operations WHERE state NOT IN "
                                            "('CONFIRMED', 'FAILED', 'CANCELED')")
                if open_ == 0:
                    break
                for p in procs:
                    if p.poll() is not None:
                        raise RuntimeError(f"child {p.args} exited: see /tmp/rwa-bench-agent-*.log")
                if time.time() > deadline:
                    raise RuntimeError(f"{open_} operations still open at the deadline")
                await asyncio.sleep(0.05)
            t_done = time.time()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            import httpx

            steps: dict[str, float] = {}
            async with httpx.AsyncClient() as http:
                for line in (await http.get(f"http://127.0.0.1:{mport}/metrics")).text.splitlines():
                    if line.startswith("rwa_agent_step_seconds_sum"):
                        steps[line.split('step="')[1].split('"')[0]] = round(float(line.rsplit(" ", 1)[1]), 2)
            nonce_after = int(await client.call("eth_getTransactionCount", [AGENT_ADDR, "latest"]), 16)
            rows = await conn.fetch(
                "SELECT state, extract(epoch from created_at) AS created, extract(epoch from mined_at) AS mined, "
                "extract(epoch from confirmed_at) AS confirmed, mined_block, gas_used, mined_tx_hash, nonce, "
                "array_length(tx_hashes, 1) AS sent FROM chain_operations")
            first_block = min(r["mined_block"] for r in rows)
            from eth_utils import keccak

            logs = await client.call("eth_getLogs", [{"address": token, "fromBlock": hex(first_block),
                                                      "toBlock": "latest",
                                                      "topics": ["0x" + keccak(text="Transfer(address,address,uint256)").hex()]}])
    finally:
        stop.set()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        await conn.close()
    n = len(moves)
    confirmed = [r for r in rows if r["state"] == "CONFIRMED"]
    last_confirmed = max(float(r["confirmed"]) for r in confirmed)
    last_mined = max(float(r["mined"]) for r in rows if r["mined"] is not None)
    # the burst's operations all become visible at the commit of the enqueuing transaction (a match commits its
    # operation with the trade): latencies and rates count from there; the enqueue itself is reported apart
    lat = [float(r["confirmed"]) - t_committed for r in confirmed]
    after_final = [float(r["confirmed"]) - final_at[r["mined_block"]] for r in confirmed if r["mined_block"] in final_at]
    return {
        "settled": len(confirmed), "failed": sum(r["state"] == "FAILED" for r in rows),
        "settled_per_s": n / (last_confirmed - t_committed), "mined_per_s": n / (last_mined - t_committed),
        "latency_p50_s": pct(lat, 0.5), "latency_p99_s": pct(lat, 0.99),
        "after_final_p50_s": pct(after_final, 0.5), "after_final_p99_s": pct(after_final, 0.99),
        "transfer_logs": len(logs), "agent_nonces_used": nonce_after - nonce_before,
        "distinct_tx": len({r["mined_tx_hash"] for r in rows}), "resends": sum((r["sent"] or 0) - 1 for r in rows),
        "gas_per_transfer": sum(int(r["gas_used"]) for r in confirmed) / max(1, len(confirmed)),
        "enqueue_s": t_committed - t_enqueue, "agent_step_seconds": steps, "wall_after_commit_s": t_done - t_committed,
    }


BATCHED_FN = '''

@external
def batchForcedTransfer(senders: DynArray[address, MAX_BATCH], receivers: DynArray[address, MAX_BATCH],
                        amounts: DynArray[uint256, MAX_BATCH]) -> bool:
    self._only_agent()
    assert len(senders) == len(receivers) and len(receivers) == len(amounts), "length mismatch"
    for i: uint256 in range(len(senders), bound=MAX_BATCH):
        assert self.balanceOf[senders[i]] >= amounts[i], "sender balance too low"
        assert receivers[i] != empty(address), "zero address"
        assert staticcall self.identityRegistry.isVerified(receivers[i]), "identity is not verified"
        self._unfreeze_for(senders[i], amounts[i])
        self._move(senders[i], receivers[i], amounts[i])
    return True
'''


async def batched_gas(url: str, registry: str, accounts: list[str], per_tx: int) -> dict[str, float] | None:
    """Gas per transfer of a batched forcedTransfer (bench-only contract variant), or None without vyper."""
    try:
        import vyper
    except ImportError:
        return None
    src = (REPO / "chains" / "contracts" / "SecurityToken.vy").read_text() + BATCHED_FN
    out = vyper.compile_code(src, output_formats=["abi", "bytecode"])
    w3 = connect(url)
    try:
        factory = w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
        rcpt = await transact(factory.constructor("Batch", "BAT", 18, registry), accounts[0])
        tok = w3.eth.contract(address=rcpt["contractAddress"], abi=out["abi"])
        await transact(tok.functions.addAgent(accounts[0]), accounts[0])
        # distinct wallets per transfer (every slot cold, as across many trades), all of them already holding
        # tokens (non-zero -> non-zero balance writes, as in the single-transfer runs)
        from eth_account import Account

        from chains.deploy import at

        reg = at(w3, "IdentityRegistry", registry)
        wallets = [Account.create().address for _ in range(2 * per_tx)]
        for wlt in wallets:
            await transact(reg.functions.registerIdentity(wlt, wlt, 840), accounts[0])
            await transact(tok.functions.mint(wlt, 10**20), accounts[0])
        senders, receivers = wallets[:per_tx], wallets[per_tx:]
        single = await transact(tok.functions.forcedTransfer(senders[0], receivers[0], 10**18), accounts[0])
        r = await transact(tok.functions.batchForcedTransfer(senders[1:], receivers[1:], [10**18] * (per_tx - 1)),
                           accounts[0], {"gas": 10_000_000})
        return {"single_gas_distinct_wallets": single["gasUsed"],
                "batched_gas_per_transfer": r["gasUsed"] / (per_tx - 1)}
    finally:
        await w3.provider.disconnect()


AGENT_ADDR = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


async def main_async(node: AnvilNode, db_url: str, n: int, block_interval: float) -> dict[str, Any]:
    stack, accounts, _ = await setup(node.url, db_url)
    moves = transfers(accounts, n, 10**18)
    raw = await raw_script(node.url, stack.token.address, moves)
    agent = await agent_run(node, db_url, stack.token.address, moves, block_interval)
    batched = await batched_gas(node.url, stack.registry.address, accounts, 50)
    out: dict[str, Any] = {"transfers": n, **raw, **agent, "batch_of": 50, **(batched or {})}
    out["settled_vs_raw"] = agent["settled_per_s"] / raw["raw_per_s"]
    out["mined_vs_raw"] = agent["mined_per_s"] / raw["raw_per_s"]
    out["no_double_send"] = (agent["transfer_logs"] == n and agent["agent_nonces_used"] == n
                             and agent["distinct_tx"] == n)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transfers", type=int, default=1000)
    ap.add_argument("--block-interval", type=float, default=0.25, help="extra empty blocks (finality progress)")
    args = ap.parse_args()
    with AnvilNode(1, extra_args=["--gas-limit", "60000000"]) as node, scratch_database("rwa_bench_agent") as db:
        res = asyncio.run(main_async(node, db, args.transfers, args.block_interval))
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}, indent=2))
    ok = res["no_double_send"] and res["settled"] == args.transfers
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
