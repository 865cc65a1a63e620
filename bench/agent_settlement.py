"""Benchmark: N matched trades settled on chain by the agent, end to end on one anvil chain, next to a plain script.

One run, one anvil node (automine; a block producer also mines every --block-interval s through both phases so
finality advances; anvil: finalized = head - 8), a fresh database, the RWA stack deployed by anvil account 0 (the
agent), 9 verified investors holding tokens, `rwa index run` and `rwa agent run` as child processes.

1. raw (the baseline): a plain script signs N `SecurityToken.settlementTransfer` txs (one per trade, the same
   seller -> buyer moves) at consecutive nonces, sends them with eth_sendRawTransaction in JSON-RPC batches of 200
   and polls receipts in batches until all are mined. `raw_per_s` counts send + receipt (signing excluded; also
   given with it); `raw_to_final_per_s` also waits until the last one's block is final (the end point of ours).
2. agent: N crossing trades committed at once as a match writes them (resolvers.trading.settlement.settle's trade,
   settlement instruction and `settlement.transfer` operation rows, in one transaction), then until every trade is
   SETTLED: `settled_per_s` = N / (last SETTLED - the commit). It includes folding into batch operations (up to
   RWA_AGENT_BATCH_MAX per batchSettlementTransfer), estimation, signing, the raw txs stored before broadcast,
   receipts, the indexer storing the Transfers, the blocks becoming final on the node, the confirmation from the
   indexed events and the trades SETTLED with their audit rows. Latency match commit -> SETTLED p50/p99, and from
   the moment the block became final on the node (finalized tag polled every 20 ms) -> SETTLED p50/p99;
   `finality_wait_s`: last transfer seen mined -> its block final (the chain's part: 8 blocks at
   --block-interval, whatever N is), and `settled_per_s_net_of_finality` = N / (last SETTLED - commit - that wait).
   A burst of batches makes few blocks, so the wait is ~8 x --block-interval; 1,000 single txs made 1,000 blocks
   and the raw side's own blocks finalize most of them.
3. checks: every trade SETTLED, exactly N Transfer logs of the token in the agent phase, every trade's operation
   CONFIRMED by a transaction that carries its Transfer, agent nonces used == transactions mined (no double send).
4. gas per settled trade: single settlementTransfer (the raw script's mean) vs this run's batches, and a
   batchSettlementTransfer of 50 between 100 distinct fresh wallets (every slot cold: the worst case for a batch).

    .venv/bin/python -m bench.agent_settlement --transfers 1000
    BENCH_PROFILE=/tmp/agent.prof.txt .venv/bin/python -m bench.agent_settlement   # pyinstrument of the agent child
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
import uuid
from datetime import UTC, datetime
from decimal import Decimal
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
AGENT_ADDR = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
INVESTORS = 9  # anvil accounts 1..9: sellers and buyers in turn
BATCH = 200
UNIT = 10**18


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def transfers(accounts: list[str], n: int) -> list[tuple[int, int]]:
    """(seller index, buyer index) into the investors, per trade."""
    return [(i % INVESTORS, (i + 1) % INVESTORS) for i in range(n)]


class Chain:
    """The block producer and the finality watch, running through both phases."""

    def __init__(self, client: RpcClient, interval: float) -> None:
        self.client, self.interval = client, interval
        self.final_at: dict[int, float] = {}  # block -> wall time it was first seen at or below the finalized tag
        self.last_final = -1
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def _watch(self) -> None:
        while not self.stop.is_set():
            try:
                b = await self.client.call("eth_getBlockByNumber", ["finalized", False])
            except Exception as exc:  # noqa: BLE001  (a slow node on a busy machine: keep watching)
                print(f"finality watch: {type(exc).__name__}: {exc}", file=sys.stderr)
                await asyncio.sleep(0.1)
                continue
            n = int(b["number"], 16) if b else -1
            now = time.time()
            for k in range(self.last_final + 1, n + 1):
                self.final_at[k] = now
            self.last_final = max(self.last_final, n)
            await asyncio.sleep(0.02)

    async def _produce(self) -> None:
        while not self.stop.is_set():
            try:
                await self.client.call("evm_mine")
            except Exception as exc:  # noqa: BLE001
                print(f"block producer: {type(exc).__name__}: {exc}", file=sys.stderr)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._produce())]

    async def until_final(self, block: int, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while self.last_final < block:
            if time.monotonic() > deadline or any(t.done() for t in self.tasks):
                raise RuntimeError(f"block {block} not final after {timeout} s (finalized: {self.last_final})")
            await asyncio.sleep(0.005)
        return self.final_at[block]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def setup(url: str, db_url: str) -> tuple[Any, list[str], dict[str, Any]]:
    """The stack on chain (investors verified, holding tokens) and the platform rows trades refer to."""
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from models.identity import User
    from models.tokens import Token, TokenKind
    from models.trading import Market, Order, OrderStatus, OrderType, Side, TimeInForce

    w3 = connect(url)
    accounts = list(await w3.eth.accounts)
    start = await w3.eth.block_number + 1
    stack = await deploy_rwa_stack(w3, accounts[0])
    investors = accounts[1 : 1 + INVESTORS]
    for inv in investors:
        await transact(stack.registry.functions.registerIdentity(inv, inv, 840), accounts[0])
        await transact(stack.token.functions.mint(inv, 10**24), accounts[0])
    engine = create_async_engine(db_url)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as s:
            token = Token(
                id=uuid.uuid4(),
                chain_id=1,
                address=stack.token.address,
                kind=TokenKind.SECURITY,
                name="Bench",
                symbol="BNCH",
                decimals=18,
                total_supply=0,
                paused=False,
                identity_registry=stack.registry.address,
                start_block=start,
            )
            s.add(token)
            await s.flush()
            market = Market(
                id=uuid.uuid4(),
                symbol="BNCH/USDC",
                base_token_id=token.id,
                chain_id=1,
                token_address=stack.token.address,
                base_decimals=18,
                quote_currency="USDC",
                tick_size=Decimal("0.01"),
                lot_size=Decimal(1),
                min_notional=Decimal(0),
            )
            users = [User(id=uuid.uuid4(), email=f"bench-{i}@example.com", password_hash="x") for i in range(INVESTORS)]
            s.add_all([market, *users])
            await s.flush()
            orders = {}
            for i, u in enumerate(users):  # what the trades refer to (maker = the buy, taker = the sell)
                for side in (Side.BUY, Side.SELL):
                    o = Order(
                        id=uuid.uuid4(),
                        market_id=market.id,
                        user_id=u.id,
                        side=side,
                        type=OrderType.LIMIT,
                        time_in_force=TimeInForce.GTC,
                        price=Decimal(10),
                        quantity=Decimal(10**6),
                        status=OrderStatus.PARTIALLY_FILLED,
                        wallet_address=investors[i],
                    )
                    s.add(o)
                    orders[(i, side.value)] = o.id
            await s.commit()
    finally:
        await engine.dispose()
    return stack, investors, {"market": market.id, "users": [u.id for u in users], "orders": orders}


async def raw_script(
    client: RpcClient, chain: Chain, token: str, investors: list[str], moves: list[tuple[int, int]]
) -> dict[str, float]:
    """The plain baseline: sign, eth_sendRawTransaction in batches, receipts in batches (then: until final)."""
    signer = LocalSigner(AGENT_KEY)
    nonce = int(await client.call("eth_getTransactionCount", [signer.address, "pending"]), 16)
    block = await client.call("eth_getBlockByNumber", ["latest", False])
    max_fee = 2 * int(block["baseFeePerGas"], 16) + 2 * 10**9
    t_sign = time.perf_counter()
    raws = []
    for i, (a, b) in enumerate(moves):
        tx = {
            "chainId": 1,
            "nonce": nonce + i,
            "to": token,
            "value": 0,
            "gas": 150_000,
            "type": 2,
            "data": encode_call("SecurityToken", "settlementTransfer", [investors[a], investors[b], str(UNIT)]),
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": 2 * 10**9,
        }
        raws.append(await signer.sign(tx))
    t0 = time.perf_counter()
    for i in range(0, len(raws), BATCH):
        await client.batch([("eth_sendRawTransaction", [r]) for r, _ in raws[i : i + BATCH]])
    pending = [h for _, h in raws]
    gas: list[int] = []
    last_block = 0
    deadline = time.monotonic() + 300
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"raw script: {len(pending)} txs not mined after 300 s")
        rcpts = await client.batch([("eth_getTransactionReceipt", [h]) for h in pending])
        gas += [int(r["gasUsed"], 16) for r in rcpts if r]
        last_block = max([last_block] + [int(r["blockNumber"], 16) for r in rcpts if r])
        pending = [h for h, r in zip(pending, rcpts) if not r]
        if pending:
            await asyncio.sleep(0.01)
    t1 = time.perf_counter()
    await chain.until_final(last_block)
    t2 = time.perf_counter()
    n = len(moves)
    return {
        "raw_per_s": n / (t1 - t0),
        "raw_with_signing_per_s": n / (t1 - t_sign),
        "raw_to_final_per_s": n / (t2 - t0),
        "raw_gas_per_trade": sum(gas) / len(gas),
    }


def child(args: list[str], env: dict[str, str], profile: str | None = None) -> subprocess.Popen[bytes]:
    log = open(f"/tmp/rwa-bench-agent-{args[0]}.log", "wb")  # noqa: SIM115  (the child's stderr, kept for a failure)
    pre = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", profile] if profile else [sys.executable]
    return subprocess.Popen([*pre, "-m", "cli.main", *args], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)


_TRADES = "SELECT count(*) FILTER (WHERE settlement = 'PENDING') AS open, count(*) AS total FROM trades"


async def agent_run(
    node: AnvilNode,
    client: RpcClient,
    chain: Chain,
    db_url: str,
    token: str,
    investors: list[str],
    rows: dict[str, Any],
    moves: list[tuple[int, int]],
) -> dict[str, Any]:
    from chains.anvil import free_port
    from resolvers.trading.settlement import _TRADE

    mport = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "TREASURY_", "RPC_URLS_"))}
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=REDIS_URL,
        RPC_URLS_1=node.url,
        AGENT_PRIVATE_KEY=AGENT_KEY,
        RWA_AGENT_POLL_S="0.02",
        RWA_INDEXER_POLL_S="0.05",
        LOG_JSON="false",
        LOG_LEVEL="WARNING",
        RWA_DATA_DIR="/tmp/rwa-bench-agent",
        RWA_INDEXER_METRICS_PORT="0",
        RWA_AGENT_METRICS_PORT=str(mport),
    )
    procs = [
        child(["index", "run", "--chain", "1"], env),
        child(["agent", "run", "--chain", "1"], env, os.environ.get("BENCH_PROFILE")),
    ]
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        head = int(await client.call("eth_blockNumber"), 16)
        ready_by = time.time() + 300
        while (await conn.fetchval("SELECT indexed_block FROM indexer_cursors WHERE chain_id = 1") or -1) < head:
            if time.time() > ready_by or any(p.poll() is not None for p in procs):
                raise RuntimeError("the indexer did not catch up: see /tmp/rwa-bench-agent-index.log")
            await asyncio.sleep(0.05)
        # the agent is ready when it holds its sender lock (its imports take seconds on a busy machine)
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database()) "
            "AND classid = $1::bigint::oid",
            0x52574132,
        ):
            if time.time() > ready_by or any(p.poll() is not None for p in procs):
                raise RuntimeError("the agent did not start: see /tmp/rwa-bench-agent-agent.log")
            await asyncio.sleep(0.05)
        nonce_before = int(await client.call("eth_getTransactionCount", [AGENT_ADDR, "latest"]), 16)
        first_block = int(await client.call("eth_blockNumber"), 16) + 1
        now = datetime.now(UTC)
        params = []
        for a, b in moves:  # seller a sells one token to buyer b: maker = b's buy, taker = a's sell
            params.append(
                (
                    uuid.uuid4(),
                    rows["market"],
                    rows["orders"][(b, "BUY")],
                    rows["orders"][(a, "SELL")],
                    rows["users"][b],
                    rows["users"][a],
                    "SELL",
                    Decimal(10),
                    Decimal(1),
                    Decimal(0),
                    Decimal(0),
                    now,
                    uuid.uuid4(),
                    1,
                    token,
                    investors[a],
                    investors[b],
                    Decimal(UNIT),
                    uuid.uuid4(),
                )
            )
        t_match = time.time()
        async with conn.transaction():
            await conn.executemany(_TRADE, params)
        t_committed = time.time()
        deadline = time.time() + float(os.environ.get("BENCH_TIMEOUT_S", "600"))
        while True:
            open_ = (await conn.fetchrow(_TRADES))["open"]
            if open_ == 0:
                break
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"child {p.args} exited: see /tmp/rwa-bench-agent-*.log")
            if time.time() > deadline:
                raise RuntimeError(f"{open_} trades still PENDING at the deadline")
            await asyncio.sleep(0.02)
        t_done = time.time()
        import httpx

        steps: dict[str, float] = {}
        async with httpx.AsyncClient() as http:
            for line in (await http.get(f"http://127.0.0.1:{mport}/metrics")).text.splitlines():
                if line.startswith("rwa_agent_step_seconds_sum"):
                    steps[line.split('step="')[1].split('"')[0]] = round(float(line.rsplit(" ", 1)[1]), 2)
        nonce_after = int(await client.call("eth_getTransactionCount", [AGENT_ADDR, "latest"]), 16)
        trades = await conn.fetch(
            "SELECT t.settlement::text AS settlement, o.state::text AS state, o.mined_tx_hash, o.mined_block, "
            "extract(epoch from o.mined_at) AS mined, extract(epoch from o.confirmed_at) AS confirmed, "
            "o.batch_id IS NOT NULL AS batched, (SELECT count(*) FROM token_transfers tt WHERE tt.tx_hash = "
            "o.mined_tx_hash AND tt.from_address = s.from_wallet AND tt.to_address = s.to_wallet) AS carried "
            "FROM trades t JOIN settlement_instructions s ON s.trade_id = t.id "
            "JOIN chain_operations o ON o.business_ref = 'settlement:' || s.id::text"
        )
        txs = await conn.fetch(  # the transactions that carried them: batches, and operations sent alone
            "SELECT function, gas_used, array_length(tx_hashes, 1) AS sent, mined_tx_hash, mined_block, "
            "extract(epoch from signed_at) AS signed, extract(epoch from mined_at) AS mined, "
            "extract(epoch from confirmed_at) AS confirmed, "
            "(SELECT count(*) FROM chain_operations m WHERE m.batch_id = o.id) AS members FROM chain_operations o "
            "WHERE mined_tx_hash IS NOT NULL AND (kind LIKE 'batch.%' OR batch_id IS NULL)"
        )
        from eth_utils import keccak

        logs = await client.call(
            "eth_getLogs",
            [
                {
                    "address": token,
                    "fromBlock": hex(first_block),
                    "toBlock": "latest",
                    "topics": ["0x" + keccak(text="Transfer(address,address,uint256)").hex()],
                }
            ],
        )
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        await conn.close()
    n = len(moves)
    settled = [r for r in trades if r["settlement"] == "SETTLED"]
    last_confirmed = max(float(r["confirmed"]) for r in settled)
    last = max(settled, key=lambda r: float(r["mined"]))
    finality_wait = chain.final_at.get(last["mined_block"], float("nan")) - float(last["mined"])
    lat = [float(r["confirmed"]) - t_committed for r in settled]
    after_final = [
        float(r["confirmed"]) - chain.final_at[r["mined_block"]] for r in settled if r["mined_block"] in chain.final_at
    ]
    mined_txs = [t for t in txs if t["gas_used"] is not None]
    batches = [t for t in mined_txs if t["function"] == "batchSettlementTransfer"]
    # when each transaction was signed, mined, final on the node and confirmed, in s after the commit (first 12)
    timeline = [
        [round(float(t[k]) - t_committed, 2) if t[k] is not None else None for k in ("signed", "mined")]
        + [
            round(chain.final_at.get(t["mined_block"], float("nan")) - t_committed, 2),
            round(float(t["confirmed"]) - t_committed, 2),
        ]
        for t in sorted(mined_txs, key=lambda t: t["mined_block"])[:12]
    ]
    return {
        "settled": len(settled),
        "failed": sum(r["settlement"] == "FAILED" for r in trades),
        "settled_per_s": n / (last_confirmed - t_committed),
        "mined_per_s": n / (max(float(r["mined"]) for r in settled) - t_committed),
        "latency_p50_s": pct(lat, 0.5),
        "latency_p99_s": pct(lat, 0.99),
        "after_final_p50_s": pct(after_final, 0.5),
        "after_final_p99_s": pct(after_final, 0.99),
        "finality_wait_s": finality_wait,
        # the same, less the chain's wait for the last transfer's block to become final (a property of the chain:
        # 8 blocks here, at --block-interval; it does not depend on N, so it is the latency, not the rate)
        "settled_per_s_net_of_finality": n / (last_confirmed - t_committed - finality_wait),
        "transfer_logs": len(logs),
        "agent_nonces_used": nonce_after - nonce_before,
        "transactions": len(mined_txs),
        "batches": len(batches),
        "trades_in_batches": sum(r["batched"] for r in settled),
        "all_carried_by_their_tx": all(r["state"] == "CONFIRMED" and r["carried"] >= 1 for r in settled),
        "resends": sum((t["sent"] or 1) - 1 for t in txs),
        "gas_per_trade": sum(int(t["gas_used"]) for t in mined_txs) / max(1, len(settled)),
        "match_commit_s": t_committed - t_match,
        "agent_step_seconds": steps,
        "tx_signed_mined_final_confirmed_s": timeline,
        "wall_after_commit_s": t_done - t_committed,
    }


async def batched_gas(url: str, token_addr: str, registry: str, agent: str, per_tx: int) -> dict[str, float]:
    """Gas per trade of batchSettlementTransfer between 2 x per_tx distinct fresh wallets (every slot cold, as
    across many unrelated trades), all already holding tokens, next to one settlementTransfer between two more."""
    from eth_account import Account

    from chains.deploy import at

    w3 = connect(url)
    try:
        reg, tok = at(w3, "IdentityRegistry", registry), at(w3, "SecurityToken", token_addr)
        wallets = [Account.create().address for _ in range(2 * per_tx + 2)]
        for wlt in wallets:
            await transact(reg.functions.registerIdentity(wlt, wlt, 840), agent)
            await transact(tok.functions.mint(wlt, 10**20), agent)
        senders, receivers = wallets[: per_tx + 1], wallets[per_tx + 1 :]
        single = await transact(tok.functions.settlementTransfer(senders[0], receivers[0], UNIT), agent)
        r = await transact(
            tok.functions.batchSettlementTransfer(senders[1:], receivers[1:], [UNIT] * per_tx),
            agent,
            {"gas": 10_000_000},
        )
        return {
            "single_gas_cold_wallets": single["gasUsed"],
            "batched_gas_per_trade_cold_wallets": r["gasUsed"] / per_tx,
        }
    finally:
        await w3.provider.disconnect()


async def main_async(node: AnvilNode, db_url: str, n: int, block_interval: float) -> dict[str, Any]:
    print("setup...", file=sys.stderr)
    stack, investors, rows = await setup(node.url, db_url)
    moves = transfers(investors, n)
    async with RpcClient([node.url], chain_id=1, batch_size=BATCH, timeout=60) as client:
        chain = Chain(client, block_interval)
        chain.start()
        try:
            print("raw script...", file=sys.stderr)
            raw = await raw_script(client, chain, stack.token.address, investors, moves)
            print("agent...", file=sys.stderr)
            agent = await agent_run(node, client, chain, db_url, stack.token.address, investors, rows, moves)
        finally:
            await chain.close()
    batched = await batched_gas(node.url, stack.token.address, stack.registry.address, AGENT_ADDR, 50)
    out: dict[str, Any] = {
        "transfers": n,
        "block_interval_s": block_interval,
        "batch_max": int(os.environ.get("RWA_AGENT_BATCH_MAX", "100")),
        "raw_includes": "one settlementTransfer tx per trade, signed beforehand; eth_sendRawTransaction in batches "
        "of 200 + receipts polled until all mined (raw_to_final: + until the last block is final)",
        "agent_includes": "commit of N matched trades (trade, instruction, operation rows) -> every trade SETTLED: "
        "fold into batches, estimate, sign, store, broadcast, receipts, indexer stores the "
        "Transfers, block final, confirmation from the indexed events, trades SETTLED + audit",
        **raw,
        **agent,
        **batched,
    }
    out["settled_vs_raw"] = agent["settled_per_s"] / raw["raw_per_s"]
    out["settled_vs_raw_to_final"] = agent["settled_per_s"] / raw["raw_to_final_per_s"]
    out["net_of_finality_vs_raw"] = agent["settled_per_s_net_of_finality"] / raw["raw_per_s"]
    out["mined_vs_raw"] = agent["mined_per_s"] / raw["raw_per_s"]
    out["no_double_send"] = (
        agent["transfer_logs"] == n
        and agent["all_carried_by_their_tx"]
        and agent["agent_nonces_used"] == agent["transactions"]
    )
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
