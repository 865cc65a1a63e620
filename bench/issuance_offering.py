"""An offering with N subscribers (default 10,000) closed and allocated end to end on anvil, next to a plain script
minting the same shape in the same run.

    .venv/bin/python -m bench.issuance_offering [--subscribers 10000] [--batch 200]

Setup (not timed): one anvil chain (finalized = head - 8), the RWA stack deployed, N investor wallets registered in
the identity registry (batchRegisterIdentity), the indexer following the chain in this process, and N KYC-approved
investors with cash who subscribe through the domain function from 8 connections at once (their rate is printed
too; each holds the offering's row lock until it commits, so they serialize by design). BENCH_PROFILE=subscribe|close
prints a pyinstrument profile of that phase.

Timed:
- raw: a plain script signs `batchMint` transactions of the same size to the same wallets with the agent's key,
  sends them all (eth_sendRawTransaction, consecutive nonces) and waits for every receipt: mints/s;
- agent: from the close (allocation committed, operations enqueued) to every mint operation CONFIRMED, i.e. sent by
  the agent, mined, indexed and final: mints/s, plus the time to the last receipt (MINED) alone.
Fairness: the raw script neither waits for finality nor writes anything; the agent path includes the allocation
commit, the indexer and 8 blocks of finality (a block is mined every 0.1 s, as in the tests). Both run on the same
node, one after the other. Afterwards: every subscription SETTLED, cash conserved to the unit, holdings = balanceOf.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
from eth_account import Account
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from agent.config import AgentConfig
from agent.executor import run_agent
from bench.harness import REDIS_URL, scratch_database
from chains.anvil import AnvilNode, free_port
from chains.deploy import connect, deploy_rwa_stack, transact
from chains.rpc import RpcClient
from core.settings import Settings
from indexer.config import IndexerConfig
from indexer.service import run_indexer
from indexer.verify import verify_token
from models.assets import Asset, AssetStatus, AssetType
from models.identity import User
from models.issuance import AllocationRule
from models.tokens import Token, TokenKind
from resolvers import ledger
from resolvers.issuance import closing, offerings, subscriptions
from resolvers.issuance.offerings import Actor

AGENT_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil account 0 (dev only)
QUOTE = "USDT"
REGISTER_BATCH = 250
SUBSCRIBERS_AT_ONCE = 8


def wallets(n: int) -> list[str]:
    return [Account.from_key((i + 1).to_bytes(32, "big")).address for i in range(1000, 1000 + n)]


async def register_all(w3, registry, agent: str, addresses: list[str]) -> None:  # type: ignore[no-untyped-def]
    for i in range(0, len(addresses), REGISTER_BATCH):
        chunk = addresses[i:i + REGISTER_BATCH]
        await transact(registry.functions.batchRegisterIdentity(chunk, chunk, [276] * len(chunk)), agent)


async def raw_mints(url: str, token, addresses: list[str], batch: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Sign and send every batchMint at once (consecutive nonces), then wait for all receipts."""
    acct = Account.from_key(AGENT_KEY)
    async with httpx.AsyncClient(timeout=60) as http:
        async def call(method: str, *params):  # type: ignore[no-untyped-def]
            r = (await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})).json()
            if "error" in r:
                raise RuntimeError(r["error"])
            return r["result"]

        nonce = int(await call("eth_getTransactionCount", acct.address, "pending"), 16)
        gas_price = int(await call("eth_gasPrice"), 16) * 2
        txs = []
        for n, i in enumerate(range(0, len(addresses), batch)):
            chunk = addresses[i:i + batch]
            data = token.encode_abi("batchMint", args=[chunk, [10**18] * len(chunk)])
            txs.append(acct.sign_transaction({"to": token.address, "data": data, "nonce": nonce + n, "chainId": 1,
                                              "gas": 60_000 * len(chunk) + 100_000, "maxFeePerGas": gas_price,
                                              "maxPriorityFeePerGas": 10**9, "type": 2}))
        t0 = time.perf_counter()
        hashes = [await call("eth_sendRawTransaction", "0x" + tx.raw_transaction.hex()) for tx in txs]
        pending = set(hashes)
        gas = 0
        while pending:
            for h in list(pending):
                receipt = await call("eth_getTransactionReceipt", h)
                if receipt:
                    assert receipt["status"] == "0x1", receipt
                    gas += int(receipt["gasUsed"], 16)
                    pending.discard(h)
            await asyncio.sleep(0.02)
        return time.perf_counter() - t0, gas


async def seed_investors(sf: async_sessionmaker[AsyncSession], addresses: list[str]) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in addresses]
    async with sf() as s:
        conn = await (await s.connection()).get_raw_connection()
        raw = conn.driver_connection
        await raw.copy_records_to_table(
            "users", columns=["id", "email", "password_hash", "roles", "status", "failed_logins"],
            records=[(u, f"{u.hex}@bench.example", "x", ["INVESTOR"], "ACTIVE", 0) for u in ids])
        await raw.copy_records_to_table(
            "kyc_cases", columns=["id", "user_id", "status", "country", "expires_at", "accredited"],
            records=[(uuid.uuid4(), u, "APPROVED", "DE", datetime(2100, 1, 1, tzinfo=timezone.utc), False)
                     for u in ids])
        await raw.copy_records_to_table("wallets", columns=["id", "user_id", "address"],
                                        records=[(uuid.uuid4(), u, a) for u, a in zip(ids, addresses)])
        await s.commit()
    for i in range(0, len(ids), 1000):
        async with sf() as s:
            for u in ids[i:i + 1000]:
                await ledger.credit_deposit(s, u, Decimal(1000), QUOTE, f"bench:{u}")
            await s.commit()
    return ids


async def wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def run(n: int, batch: int, db_url: str, node: AnvilNode) -> None:
    closing.MINT_BATCH = batch
    if True:  # (one indentation level kept for readability of the phases below)
        w3 = connect(node.url)
        accounts = list(await w3.eth.accounts)
        stack = await deploy_rwa_stack(w3, accounts[0])
        addresses = wallets(n)
        t = time.perf_counter()
        await register_all(w3, stack.registry, accounts[0], addresses)
        print(f"setup: {n} identities registered in {time.perf_counter() - t:.1f} s", flush=True)
        engine = create_async_engine(db_url, pool_size=SUBSCRIBERS_AT_ONCE + 2)
        sf = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        async with sf() as s:
            issuer = uuid.uuid4()
            s.add(User(id=issuer, email="issuer@bench.example", password_hash="x", roles=["ISSUER"]))
            await s.flush()
            asset = Asset(id=uuid.uuid4(), issuer_id=issuer, name="Bench fund", type=AssetType.OTHER,
                          status=AssetStatus.ACTIVE, jurisdiction="DE", currency="EUR", attributes={})
            s.add(asset)
            await s.flush()
            token_id = uuid.uuid4()
            s.add(Token(id=token_id, chain_id=1, address=stack.token.address, kind=TokenKind.SECURITY,
                        asset_id=asset.id, symbol="B", decimals=18, identity_registry=stack.registry.address))
            await s.commit()
        start = await w3.eth.block_number
        settings = Settings(DATABASE_URL=db_url, REDIS_URL=REDIS_URL, AGENT_PRIVATE_KEY=AGENT_KEY,  # type: ignore[call-arg]
                            RWA_REDIS_PREFIX=f"rwa-bench:{uuid.uuid4().hex[:8]}:")
        os.environ["RPC_URLS_1"] = node.url
        stop = asyncio.Event()

        async def miner() -> None:
            while not stop.is_set():
                await asyncio.to_thread(node.mine, 1)
                await asyncio.sleep(0.1)

        indexer = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=IndexerConfig(
            poll_interval_s=0.05, finality_depth={1: 8}, lock_retry_s=0.2)))
        mining = asyncio.create_task(miner())

        async def identities_indexed() -> bool:
            async with sf() as s:
                return (await s.execute(text("SELECT count(*) FROM identities WHERE registered"))).scalar_one() >= n
        await wait_for(identities_indexed, 600, "identities indexed")
        print(f"setup: identities indexed ({start} blocks)", flush=True)

        raw_s, raw_gas = await raw_mints(node.url, stack.token, addresses, batch)
        print(f"raw batchMint: {n} mints in {raw_s:.2f} s = {n / raw_s:,.0f} mints/s "
              f"({raw_gas // n:,} gas per mint)", flush=True)

        investors = await seed_investors(sf, addresses)
        boss = Actor(issuer, frozenset({"ISSUER"}))
        now = datetime.now(timezone.utc)
        spec = offerings.OfferingSpec(token_id=token_id, name="Bench placement", quote_currency=QUOTE,
                                      price=Decimal("3"), min_ticket=Decimal(3), target=Decimal(1),
                                      hard_cap=Decimal(n) * Decimal(90), opens_at=now - timedelta(minutes=1),
                                      closes_at=now + timedelta(hours=1), allocation_rule=AllocationRule.PRO_RATA,
                                      fee_bps=25)
        async with sf() as s:
            offering = await offerings.create_offering(s, boss, spec)
            await offerings.open_offering(s, boss, offering.id)
            await s.commit()
        profiler = None
        if os.environ.get("BENCH_PROFILE") == "subscribe":
            from pyinstrument import Profiler
            profiler = Profiler(async_mode="enabled")
            profiler.start()
        t = time.perf_counter()
        queue = list(enumerate(investors))

        async def subscriber() -> None:  # investors arrive from several connections, as through API processes
            while queue:
                i, u = queue.pop()
                async with sf() as s:
                    amount = Decimal(100 + (i % 7) * 10)  # oversubscribed: pro-rata with remainders
                    sub = await subscriptions.subscribe(s, Actor(u, frozenset({"INVESTOR"})),
                                                        subscriptions.SubscribeRequest(offering.id, amount))
                    assert sub.reason is None, sub.reason
                    await s.commit()
        await asyncio.gather(*[subscriber() for _ in range(SUBSCRIBERS_AT_ONCE)])
        sub_s = time.perf_counter() - t
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False)[:6000])
        print(f"subscriptions: {n} in {sub_s:.1f} s = {n / sub_s:,.0f}/s", flush=True)

        agent = asyncio.create_task(run_agent(settings, [1], stop=stop, config=AgentConfig(
            poll_s=0.05, replace_after_s=30.0, lock_retry_s=0.2)))
        profiler = None
        if os.environ.get("BENCH_PROFILE") == "close":
            from pyinstrument import Profiler
            profiler = Profiler(async_mode="enabled")
            profiler.start()
        t0 = time.perf_counter()
        async with sf() as s:
            await closing.close_offering(s, boss, offering.id)
            await s.commit()
        close_s = time.perf_counter() - t0
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False)[:8000])
        mined_at: list[float] = []

        async def all_done() -> bool:
            async with sf() as s:
                rows = (await s.execute(text("SELECT state FROM chain_operations WHERE kind = 'offering.mint'"))
                        ).scalars().all()
            if not mined_at and rows and all(r in ("MINED", "CONFIRMED") for r in rows):
                mined_at.append(time.perf_counter() - t0)
            return bool(rows) and all(r == "CONFIRMED" for r in rows)
        await wait_for(all_done, 900, "mint operations confirmed")
        total_s = time.perf_counter() - t0
        stop.set()
        await asyncio.gather(indexer, mining, agent, return_exceptions=True)

        async with sf() as s:
            states = dict((await s.execute(text("SELECT state, count(*) FROM offering_subscriptions GROUP BY state")
                                           )).all())
            alloc = (await s.execute(text("SELECT sum(allocated_cash), sum(amount) FROM offering_subscriptions"))).one()
            reserved = (await s.execute(text("SELECT coalesce(sum(balance), 0) FROM ledger_accounts "
                                             "WHERE kind = 'RESERVED'"))).scalar_one()
            users_total = (await s.execute(text("SELECT sum(balance) FROM ledger_accounts WHERE owner_id IS NOT NULL"))
                           ).scalar_one()
            fees = (await s.execute(text("SELECT coalesce(sum(balance), 0) FROM ledger_accounts "
                                         "WHERE owner_id IS NULL AND kind = 'FEES'"))).scalar_one()
            sends = (await s.execute(text("SELECT sum(cardinality(tx_hashes)), count(*) FROM chain_operations "
                                          "WHERE kind = 'offering.mint'"))).one()
        rpc = RpcClient([node.url], chain_id=1)
        report = await verify_token(engine, rpc, 1, stack.token.address)
        await rpc.aclose()
        await engine.dispose()
        await w3.provider.disconnect()
        rate, raw_rate = n / total_s, n / raw_s
        print(f"agent: close+allocation {close_s:.2f} s; all {n} mints MINED after {mined_at[0]:.2f} s, "
              f"CONFIRMED (indexed, final) after {total_s:.2f} s = {rate:,.0f} mints/s")
        print(f"ratio agent/raw: {rate / raw_rate:.2f} (to MINED: {n / mined_at[0] / raw_rate:.2f}); "
              f"broadcasts {sends[0]} for {sends[1]} operations")
        print(f"subscriptions: {states}; allocated {alloc[0]} of {alloc[1]} asked; reserved left {reserved}; "
              f"users' cash {users_total} + fees {fees} = {users_total + fees} (seeded {n * 1000})")
        print(f"verify: {report.holders_checked} holders, {len(report.mismatches)} mismatches, "
              f"supply {report.total_supply} = indexed {report.indexed_sum}")
        assert states == {"SETTLED": n}, states
        assert reserved == 0 and users_total + fees == n * 1000 and not report.mismatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=closing.MINT_BATCH)
    args = parser.parse_args()
    with scratch_database("rwa_bench_issuance") as db_url, \
            AnvilNode(port=free_port(), chain_id=1, slots_in_an_epoch=4) as node:
        asyncio.run(run(args.subscribers, args.batch, db_url, node))


if __name__ == "__main__":
    main()
