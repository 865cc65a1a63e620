"""Benchmark: on-chain payment reconciliation, end to end on anvil.

One run: a fresh database and anvil node, a stablecoin registered as a STABLECOIN token, N payments (each with
its own HD deposit address), their deposits sent with batchTransfer (500 per tx), then blocks mined every
--block-time seconds so deposits become final a block at a time (anvil: finalized = head - 8). The indexer
(run_indexer) and the reconciler loop (reconcile_chain every --interval seconds, as the worker's scheduler
does) run in this process. Reported, in the same run:
- reconciled payments/s: confirmations per second of reconciler busy time, and N / wall time from the first
  deposit becoming final to the last confirmation;
- latency from a deposit's block becoming final (the indexer's cursor shows it) to its CONFIRMED commit: p50/p99;
- the indexer's raw event rate: a backfill of the same blocks into a second fresh database (events/s);
- checks: all N CONFIRMED, exactly N credit movements, the users' cash = N x amount, ledger balanced.

    .venv/bin/python bench/payments_reconcile.py --payments 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import REDIS_URL, scratch_database  # noqa: E402
from chains.anvil import AnvilNode  # noqa: E402
from chains.deploy import connect, deploy_stablecoin, transact  # noqa: E402
from chains.loadgen import MAX_BATCH, _call, batch_transfer_calldata  # noqa: E402
from core.hd_wallet import DepositWallet  # noqa: E402
from core.settings import Environment, Settings  # noqa: E402
from indexer.config import IndexerConfig  # noqa: E402
from indexer.service import backfill, run_indexer  # noqa: E402

MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"
AMOUNT_UNITS = 10_000_000  # 10 USDC per payment
CONFIG = IndexerConfig(poll_interval_s=0.1, finality_depth={1: 8}, lock_retry_s=0.2, error_backoff_s=0.2)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def create_payments(factory, user_id: uuid.UUID, token: str, n: int) -> list[tuple[uuid.UUID, str]]:  # type: ignore[no-untyped-def]
    from models.payments import PaymentMethod
    from resolvers.payments import intents, notify

    wallet = DepositWallet(MNEMONIC)
    out = []
    for start in range(0, n, 500):
        async with factory() as s:
            for i in range(start, min(n, start + 500)):
                p, _ = await intents.create_payment(
                    s,
                    wallet,
                    user_id=user_id,
                    amount=Decimal(AMOUNT_UNITS).scaleb(-6),
                    currency="USDC",
                    method=PaymentMethod.STABLECOIN,
                    idempotency_key=f"bench-{i}",
                    chain_id=1,
                    token=token,
                    expires_in=24 * 3600,
                )
                out.append((p.id, p.deposit_address))
            await notify.commit(s, None, "")
    return out


async def send_deposits(url: str, token: str, sender: str, addresses: list[str], per_tx: int) -> list[int]:
    """One batchTransfer per `per_tx` deposit addresses (automine: one block each); returns the blocks."""
    blocks = []
    async with httpx.AsyncClient(timeout=120) as client:
        for start in range(0, len(addresses), per_tx):
            chunk = addresses[start : start + per_tx]
            data = batch_transfer_calldata(chunk, [AMOUNT_UNITS] * len(chunk))
            (tx_hash,) = await _call(
                client,
                url,
                [("eth_sendTransaction", [{"from": sender, "to": token, "data": data, "gas": hex(29_000_000)}])],
            )
            while True:
                (receipt,) = await _call(client, url, [("eth_getTransactionReceipt", [tx_hash])])
                if receipt:
                    break
                await asyncio.sleep(0.01)
            if receipt["status"] != "0x1":
                raise RuntimeError(f"batchTransfer reverted: {tx_hash}")
            blocks.append(int(receipt["blockNumber"], 16))
    return blocks


async def run(n: int, block_time: float, interval: float, per_tx: int, db_url: str, db2_url: str) -> dict:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from models.identity import User
    from resolvers.payments.reconcile import reconcile_chain

    with AnvilNode(1, extra_args=["--gas-limit", "60000000"]) as node:
        os.environ["RPC_URLS_1"] = node.url
        settings = Settings(
            RWA_ENV=Environment.TEST,
            DATABASE_URL=db_url,
            REDIS_URL=REDIS_URL,  # type: ignore[call-arg]
            RWA_REDIS_PREFIX=f"rwa-bench:{uuid.uuid4().hex[:8]}:",
            HD_WALLET_MNEMONIC=MNEMONIC,
        )
        engine = create_async_engine(db_url, pool_size=5)
        factory = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        w3 = connect(node.url)
        sender = (await w3.eth.accounts)[0]
        start_block = await w3.eth.block_number + 1
        stable = await deploy_stablecoin(w3, sender)
        await transact(stable.functions.mint(sender, n * AMOUNT_UNITS), sender)
        user_id = uuid.uuid4()
        async with factory() as s:
            await s.execute(
                text(
                    "INSERT INTO tokens (id, chain_id, address, kind, name, symbol, decimals, total_supply, paused, "
                    "start_block) VALUES (:id, 1, :a, 'STABLECOIN', 'USD Coin', 'USDC', 6, 0, false, :b)"
                ),
                {"id": uuid.uuid4(), "a": stable.address, "b": start_block},
            )
            s.add(User(id=user_id, email="bench@example.com", password_hash="x"))
            await s.commit()
        t0 = time.perf_counter()
        payments = await create_payments(factory, user_id, stable.address, n)
        create_s = time.perf_counter() - t0
        print(f"created {n} payments in {create_s:.1f} s ({n / create_s:,.0f}/s)", flush=True)

        stop = asyncio.Event()
        indexer = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=CONFIG))
        final_at: dict[int, float] = {}  # block -> wall time the indexer showed it final
        confirmed_at: dict[uuid.UUID, float] = {}
        busy = [0.0]
        passes: list[tuple[float, int]] = []  # (seconds, payments changed) of passes that did work

        async def monitor() -> None:
            seen = -1
            while not stop.is_set():
                async with factory() as s:
                    f = (
                        await s.execute(
                            text("SELECT LEAST(finalized_block, indexed_block) FROM indexer_cursors WHERE chain_id = 1")
                        )
                    ).scalar()
                now = time.time()
                if f is not None and f > seen:
                    for b in range(seen + 1, f + 1):
                        final_at[b] = now
                    seen = f
                await asyncio.sleep(0.02)

        async def reconciler() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                stats = await reconcile_chain(factory, 1)
                busy[0] += time.perf_counter() - t
                if stats.changed:
                    passes.append((time.perf_counter() - t, stats.changed))
                for pid, state, at in stats.committed:
                    if state.value == "CONFIRMED":
                        confirmed_at[pid] = at.timestamp()
                await asyncio.sleep(interval)

        async def miner() -> None:
            while not stop.is_set():
                node.mine(1)
                await asyncio.sleep(block_time)

        tasks = [asyncio.create_task(monitor()), asyncio.create_task(reconciler())]
        t_send = time.perf_counter()
        blocks = await send_deposits(node.url, stable.address, sender, [a for _, a in payments], per_tx)
        send_s = time.perf_counter() - t_send
        print(f"sent {n} deposits in {len(blocks)} txs (blocks {blocks[0]}-{blocks[-1]}) in {send_s:.1f} s", flush=True)
        tasks.append(asyncio.create_task(miner()))
        block_of = {}
        for i, (pid, _) in enumerate(payments):
            block_of[pid] = blocks[i // per_tx]
        deadline = time.perf_counter() + 600
        while len(confirmed_at) < n and time.perf_counter() < deadline:
            if indexer.done():
                indexer.result()
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks, indexer, return_exceptions=True)
        latencies = [confirmed_at[pid] - final_at[block_of[pid]] for pid in confirmed_at if block_of[pid] in final_at]
        first_final = min(final_at[b] for b in set(blocks) if b in final_at)
        wall = max(confirmed_at.values()) - first_final if confirmed_at else float("nan")

        async with factory() as s:
            q = lambda sql: s.execute(text(sql))  # noqa: E731
            confirmed = (await q("SELECT count(*) FROM payments WHERE state = 'CONFIRMED'")).scalar()
            credits = (
                await q("SELECT count(*) FROM ledger_transactions WHERE reference LIKE 'payment:%' AND kind = 'CREDIT'")
            ).scalar()
            cash = (
                await q(f"SELECT balance FROM ledger_accounts WHERE owner_id = '{user_id}' AND kind = 'AVAILABLE'")
            ).scalar()
            balanced = (
                await q("SELECT bool_and(t = 0) FROM (SELECT sum(balance) t FROM ledger_accounts GROUP BY currency) x")
            ).scalar()
        await engine.dispose()
        await w3.provider.disconnect()

        # the indexer's raw event rate on the same blocks, into a second fresh database
        settings2 = settings.model_copy(update={"database_url": db2_url})
        async with create_async_engine(db2_url).begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO tokens (id, chain_id, address, kind, name, symbol, decimals, total_supply, paused, "
                    "start_block) VALUES (:id, 1, :a, 'STABLECOIN', 'USD Coin', 'USDC', 6, 0, false, :b)"
                ),
                {"id": uuid.uuid4(), "a": stable.address, "b": start_block},
            )
        bf = await backfill(settings2, 1, start_block, blocks[-1], config=IndexerConfig(finality_depth={1: 8}))

    return {
        "payments": n,
        "create_per_s": n / create_s,
        "deposit_txs": len(blocks),
        "deposits_per_block": per_tx,
        "block_time_s": block_time,
        "reconcile_interval_s": interval,
        "confirmed": confirmed,
        "credit_movements": credits,
        "user_cash": str(cash),
        "expected_cash": str(Decimal(n * AMOUNT_UNITS).scaleb(-6)),
        "ledger_balanced": balanced,
        "reconciled_per_busy_s": len(confirmed_at) / busy[0] if busy[0] else float("nan"),
        "reconciled_per_wall_s": len(confirmed_at) / wall if wall else float("nan"),
        "latency_p50_s": pct(latencies, 0.50),
        "latency_p99_s": pct(latencies, 0.99),
        "latency_max_s": max(latencies, default=float("nan")),
        "working_passes": len(passes),
        "pass_s_p50": pct([p[0] for p in passes], 0.5),
        "pass_s_max": max((p[0] for p in passes), default=float("nan")),
        "indexer_backfill_events_per_s": bf.events_per_s,
        "indexer_backfill_events": bf.events,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument("--block-time", type=float, default=0.5, help="seconds between mined blocks after the deposits")
    parser.add_argument("--interval", type=float, default=0.5, help="reconciler pause between passes (worker: 0.5 s)")
    parser.add_argument("--per-tx", type=int, default=MAX_BATCH, help="deposits per batchTransfer (= per block)")
    args = parser.parse_args()
    with scratch_database("rwa_bench_pay") as db_url, scratch_database("rwa_bench_pay_idx") as db2_url:
        result = asyncio.run(
            run(args.payments, args.block_time, args.interval, min(args.per_tx, MAX_BATCH), db_url, db2_url)
        )
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v:,.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    ok = (
        result["confirmed"] == args.payments
        and result["credit_movements"] == args.payments
        and Decimal(result["user_cash"]) == Decimal(result["expected_cash"])
        and result["ledger_balanced"]
    )
    print("CHECK", "OK: all confirmed, one credit each" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
