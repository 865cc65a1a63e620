"""An offering with N subscribers (default 10,000) closed and allocated end to end on anvil, next to a plain script
minting the same shape on the same chain in the same run.

    .venv/bin/python -m bench.issuance_offering [--subscribers 10000] [--batch 200] [--block-time 1]

The chain (not timed: setup): one anvil node; the RWA stack deployed and 2N wallets registered in the identity
registry while it automines; then it becomes a chain with a block time (evm_setIntervalMining): a block every
`--block-time` seconds whether or not anything is sent, each holding what fits in its 30M gas limit, and finality
(the node's `finalized` tag, head - 8 with 4 slots an epoch; the indexer's finality depth is 8 too) moves with the
clock. Nothing the bench or the agent sends makes a block. The indexer follows the chain in a process of its own; N
KYC-approved investors with cash subscribe through the domain function from 8 connections at once (their rate is
printed too). BENCH_PROFILE=subscribe|close|agent prints a pyinstrument profile of that phase.

Timed, both on the same chain, one after the other, each minting N fresh wallets (a first mint costs the same gas on
both sides):
- raw: a plain script at its best: all its `batchMint` transactions (same batch size) estimated, signed at
  consecutive nonces with a 5 % gas margin BEFORE its clock starts, then sent in one JSON-RPC batch; clock stops at
  the last receipt (MINED), and again when the block of the last receipt is finalized (FINAL). It writes nothing.
- agent (in this process, as `rwa agent run`): from the close call (allocation committed with its mint operations;
  the leftovers' release follows in its own transaction, in another process, as the API or the worker would) to
  every mint operation MINED (receipt seen by the agent) and CONFIRMED (its Transfer events indexed at or below the
  finalized block, the subscriptions SETTLED and the cash paid in the same transaction). The agent simulates each
  operation once (eth_createAccessList) and adds its 30 % gas margin inside the clock; it runs with its default
  tuning (RWA_AGENT_BATCH 200 a pass, sent in chunks of 1, 4, 16, 64: agent/sender.py).
Ratios printed: same boundary (agent MINED vs raw MINED; agent CONFIRMED vs raw FINAL) and the strict one the issue
names (agent CONFIRMED vs raw MINED, which charges the agent 8 blocks of finality the raw script never waits for).
Afterwards it checks: every subscription SETTLED with tokens, no cash left reserved, investors' + fees' cash = what
was seeded, each investor's AVAILABLE = seeded - allocated cash and the issuer's = allocated - fees to the unit,
each wallet's indexed holding = its allocation, and `rwa index verify`'s check (holdings = balanceOf, supply).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


def wallets(n: int, first: int = 1000) -> list[str]:
    return [Account.from_key((i + 1).to_bytes(32, "big")).address for i in range(first, first + n)]


async def register_all(w3, registry, agent: str, addresses: list[str]) -> None:  # type: ignore[no-untyped-def]
    for i in range(0, len(addresses), REGISTER_BATCH):
        chunk = addresses[i : i + REGISTER_BATCH]
        await transact(registry.functions.batchRegisterIdentity(chunk, chunk, [276] * len(chunk)), agent)


@dataclass
class RawRun:
    mined_s: float  # first send -> every receipt
    final_s: float  # first send -> the block of the last receipt is finalized (the node's `finalized` tag)
    gas_per_mint: int
    txs: int
    blocks: int  # blocks holding its transactions


async def raw_mints(url: str, token, addresses: list[str], batch: int) -> RawRun:  # type: ignore[no-untyped-def]
    """A plain script at its best: every batchMint estimated (once: they all cost the same), signed with a 5 % gas
    margin and at consecutive nonces BEFORE the clock starts; then sent in one JSON-RPC batch and the receipts
    polled (one batch request every 20 ms). Nothing is written anywhere."""
    acct = Account.from_key(AGENT_KEY)
    async with httpx.AsyncClient(timeout=60) as http:

        async def call(method: str, *params):  # type: ignore[no-untyped-def]
            r = (
                await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
            ).json()
            if "error" in r:
                raise RuntimeError(r["error"])
            return r["result"]

        async def batch_call(calls: list[tuple[str, list]]) -> list:  # type: ignore[type-arg]
            body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
            replies = sorted((await http.post(url, json=body)).json(), key=lambda r: r["id"])
            for r in replies:
                if "error" in r:
                    raise RuntimeError(r["error"])
            return [r["result"] for r in replies]

        nonce = int(await call("eth_getTransactionCount", acct.address, "pending"), 16)
        gas_price = int(await call("eth_gasPrice"), 16) * 2
        datas = [
            token.encode_abi("batchMint", args=[addresses[i : i + batch], [10**18] * len(addresses[i : i + batch])])
            for i in range(0, len(addresses), batch)
        ]
        gas = int(await call("eth_estimateGas", {"from": acct.address, "to": token.address, "data": datas[0]}), 16)
        txs = [
            acct.sign_transaction(
                {
                    "to": token.address,
                    "data": data,
                    "nonce": nonce + n,
                    "chainId": 1,
                    "gas": gas * 105 // 100,
                    "maxFeePerGas": gas_price,
                    "maxPriorityFeePerGas": 10**9,
                    "type": 2,
                }
            )
            for n, data in enumerate(datas)
        ]
        t0 = time.perf_counter()
        hashes = await batch_call([("eth_sendRawTransaction", ["0x" + tx.raw_transaction.hex()]) for tx in txs])
        receipts: dict[str, dict] = {}  # type: ignore[type-arg]
        while len(receipts) < len(hashes):
            pending = [h for h in hashes if h not in receipts]
            for h, r in zip(pending, await batch_call([("eth_getTransactionReceipt", [h]) for h in pending])):
                if r:
                    assert r["status"] == "0x1", r
                    receipts[h] = r
            await asyncio.sleep(0.02)
        mined_s = time.perf_counter() - t0
        blocks = {int(r["blockNumber"], 16) for r in receipts.values()}
        while int((await call("eth_getBlockByNumber", "finalized", False))["number"], 16) < max(blocks):
            await asyncio.sleep(0.02)
        final_s = time.perf_counter() - t0
        used = sum(int(r["gasUsed"], 16) for r in receipts.values())
        return RawRun(mined_s, final_s, used // len(addresses), len(txs), len(blocks))


async def seed_investors(sf: async_sessionmaker[AsyncSession], addresses: list[str]) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in addresses]
    async with sf() as s:
        conn = await (await s.connection()).get_raw_connection()
        raw = conn.driver_connection
        await raw.copy_records_to_table(
            "users",
            columns=["id", "email", "password_hash", "roles", "status", "failed_logins"],
            records=[(u, f"{u.hex}@bench.example", "x", ["INVESTOR"], "ACTIVE", 0) for u in ids],
        )
        await raw.copy_records_to_table(
            "kyc_cases",
            columns=["id", "user_id", "status", "country", "expires_at", "accredited"],
            records=[(uuid.uuid4(), u, "APPROVED", "DE", datetime(2100, 1, 1, tzinfo=UTC), False) for u in ids],
        )
        await raw.copy_records_to_table(
            "wallets",
            columns=["id", "user_id", "address"],
            records=[(uuid.uuid4(), u, a) for u, a in zip(ids, addresses)],
        )
        await s.commit()
    for i in range(0, len(ids), 1000):
        async with sf() as s:
            await ledger.credit_deposits(s, [(u, Decimal(1000), QUOTE, f"bench:{u}", None) for u in ids[i : i + 1000]])
            await s.commit()
    return ids


async def wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def run(n: int, batch: int, block_time: int, db_url: str, node: AnvilNode) -> None:
    closing.MINT_BATCH = batch
    w3 = connect(node.url)
    accounts = list(await w3.eth.accounts)
    stack = await deploy_rwa_stack(w3, accounts[0])
    addresses, raw_addresses = wallets(n), wallets(n, 1000 + n)  # both fresh: a first mint costs the same on each side
    t = time.perf_counter()
    await register_all(w3, stack.registry, accounts[0], addresses + raw_addresses)
    print(f"setup: {2 * n} identities registered in {time.perf_counter() - t:.1f} s", flush=True)
    # from here on a chain with a block time: anvil mines a block every `block_time` seconds whatever is sent (no
    # block per transaction), each holding what fits in its gas limit; finality (the `finalized` tag, head - 8 with
    # 4 slots an epoch) moves with the clock, as on a real chain
    node.rpc("evm_setAutomine", False)
    node.rpc("evm_setIntervalMining", block_time)
    gas_limit = int(node.rpc("eth_getBlockByNumber", "latest", False)["gasLimit"], 16)
    engine = create_async_engine(db_url, pool_size=SUBSCRIBERS_AT_ONCE + 2)
    sf = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    async with sf() as s:
        issuer = uuid.uuid4()
        s.add(User(id=issuer, email="issuer@bench.example", password_hash="x", roles=["ISSUER"]))
        await s.flush()
        asset = Asset(
            id=uuid.uuid4(),
            issuer_id=issuer,
            name="Bench fund",
            type=AssetType.OTHER,
            status=AssetStatus.ACTIVE,
            jurisdiction="DE",
            currency="EUR",
            attributes={},
        )
        s.add(asset)
        await s.flush()
        token_id = uuid.uuid4()
        s.add(
            Token(
                id=token_id,
                chain_id=1,
                address=stack.token.address,
                kind=TokenKind.SECURITY,
                asset_id=asset.id,
                symbol="B",
                decimals=18,
                identity_registry=stack.registry.address,
            )
        )
        await s.commit()
    settings = Settings(
        DATABASE_URL=db_url,
        REDIS_URL=REDIS_URL,
        AGENT_PRIVATE_KEY=AGENT_KEY,  # type: ignore[call-arg]
        RWA_REDIS_PREFIX=f"rwa-bench:{uuid.uuid4().hex[:8]}:",
    )
    os.environ["RPC_URLS_1"] = node.url
    stop = asyncio.Event()
    # the indexer in its own process, as `rwa index run` is in production (in this one, its Python work held the
    # GIL against the agent's loop: 10 s of a 37 s profile under load)
    indexer = multiprocessing.get_context("spawn").Process(
        target=_run_indexer, args=(db_url, settings.redis_prefix, node.url), daemon=True
    )
    indexer.start()

    async def identities_indexed() -> bool:
        async with sf() as s:
            return (await s.execute(text("SELECT count(*) FROM identities WHERE registered"))).scalar_one() >= 2 * n

    await wait_for(identities_indexed, 600, "identities indexed")
    print(
        f"setup: identities indexed; chain: a block every {block_time} s, gas limit {gas_limit:,}, "
        f"finalized = head - 8",
        flush=True,
    )

    raw = await raw_mints(node.url, stack.token, raw_addresses, batch)
    print(
        f"raw batchMint: {n} mints in {raw.txs} txs over {raw.blocks} blocks ({raw.gas_per_mint:,} gas per mint): "
        f"all receipts after {raw.mined_s:.2f} s = {n / raw.mined_s:,.0f} mints/s; last block final after "
        f"{raw.final_s:.2f} s = {n / raw.final_s:,.0f} mints/s",
        flush=True,
    )

    investors = await seed_investors(sf, addresses)
    async with engine.connect() as conn:  # what autovacuum does on a real database (this dev server runs without it)
        await conn.execute(text("ANALYZE"))
        await conn.commit()
    boss = Actor(issuer, frozenset({"ISSUER"}))
    now = datetime.now(UTC)
    spec = offerings.OfferingSpec(
        token_id=token_id,
        name="Bench placement",
        quote_currency=QUOTE,
        price=Decimal("3"),
        min_ticket=Decimal(3),
        target=Decimal(1),
        hard_cap=Decimal(n) * Decimal(90),
        opens_at=now - timedelta(minutes=1),
        closes_at=now + timedelta(hours=1),
        allocation_rule=AllocationRule.PRO_RATA,
        fee_bps=25,
    )
    async with sf() as s:
        offering = await offerings.create_offering(s, boss, spec)
        await offerings.open_offering(s, boss, offering.id)
        await s.commit()
    profiler = _profiler("subscribe")
    t = time.perf_counter()
    queue = list(enumerate(investors))

    async def subscriber() -> None:  # investors arrive from several connections, as through API processes
        while queue:
            i, u = queue.pop()
            async with sf() as s:
                amount = Decimal(100 + (i % 7) * 10)  # oversubscribed: pro-rata with remainders
                sub = await subscriptions.subscribe(
                    s, Actor(u, frozenset({"INVESTOR"})), subscriptions.SubscribeRequest(offering.id, amount)
                )
                assert sub.reason is None, sub.reason
                await s.commit()

    await asyncio.gather(*[subscriber() for _ in range(SUBSCRIBERS_AT_ONCE)])
    sub_s = time.perf_counter() - t
    _report(profiler, 6000)
    print(f"subscriptions: {n} in {sub_s:.1f} s = {n / sub_s:,.0f}/s ({SUBSCRIBERS_AT_ONCE} connections)", flush=True)

    # the agent's default tuning (RWA_AGENT_BATCH 200 a pass, signed and sent in chunks of 1, 2, 4, ... 32: the first
    # mint is in the pool after one estimate, the rest follow while the chain mines)
    agent = asyncio.create_task(
        run_agent(
            settings,
            [1],
            stop=stop,
            config=AgentConfig(poll_s=0.05, replace_after_s=30.0, lock_retry_s=0.2),
        )
    )
    # the caller that releases the leftovers (the API or the worker) is another process than the agent's: a child
    # process, started and warmed (imports) before the clock
    caller = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    await asyncio.get_running_loop().run_in_executor(caller, _warm)
    await asyncio.sleep(1.0)  # the agent has its sender lock and idles (not timed)
    profiler = _profiler("close")
    agent_profiler = _profiler("agent", all_tasks=True)
    t0, t0_wall = time.perf_counter(), time.time()
    async with sf() as s:
        await closing.close_offering(s, boss, offering.id)
        await s.commit()
    close_s = time.perf_counter() - t0
    _report(profiler, 8000)
    # the caller releases the leftovers right after, in its own process and transaction (20,000 ledger legs of
    # Python work: on a thread of this process it held the GIL against the agent's loop, which it never shares in
    # production)
    release = asyncio.get_running_loop().run_in_executor(caller, _release_sync, db_url, offering.id)
    marks: dict[str, float] = {}

    async def all_done() -> bool:
        async with sf() as s:
            rows = (
                (await s.execute(text("SELECT state FROM chain_operations WHERE kind = 'offering.mint'")))
                .scalars()
                .all()
            )
        now = time.perf_counter() - t0
        if "sent" not in marks and rows and all(r not in ("PENDING", "SIGNED") for r in rows):
            marks["sent"] = now
        if "mined" not in marks and rows and all(r in ("MINED", "CONFIRMED") for r in rows):
            marks["mined"] = now
        return bool(rows) and all(r == "CONFIRMED" for r in rows)

    await wait_for(all_done, 900, "mint operations confirmed")
    total_s = time.perf_counter() - t0
    _report(agent_profiler, 12000)
    async with sf() as s:  # when the agent signed and sent them (first and last), in s after the close call
        span = (
            await s.execute(
                text(
                    "SELECT min(signed_at), max(signed_at), min(broadcast_at), max(broadcast_at) "
                    "FROM chain_operations WHERE kind = 'offering.mint'"
                )
            )
        ).one()
    marks["signed"], marks["last_signed"], marks["broadcast"], marks["last_broadcast"] = (
        v.timestamp() - t0_wall for v in span
    )
    release_s = await release
    caller.shutdown()
    stop.set()
    await asyncio.gather(agent, return_exceptions=True)
    indexer.terminate()
    indexer.join(30)
    await check(sf, engine, node, stack, n, issuer, raw, close_s, release_s, marks, total_s)
    await w3.provider.disconnect()


def _run_indexer(db_url: str, redis_prefix: str, node_url: str) -> None:
    """The indexer's process (terminated at the end)."""
    os.environ["RPC_URLS_1"] = node_url
    settings = Settings(DATABASE_URL=db_url, REDIS_URL=REDIS_URL, RWA_REDIS_PREFIX=redis_prefix)  # type: ignore[call-arg]
    asyncio.run(
        run_indexer(settings, [1], config=IndexerConfig(poll_interval_s=0.05, finality_depth={1: 8}, lock_retry_s=0.2))
    )


def _warm() -> None:
    """Runs in the caller's process before the clock: its imports done."""


def _release_sync(db_url: str, offering_id: uuid.UUID) -> float:
    return asyncio.run(release_leftovers(db_url, offering_id))


async def release_leftovers(db_url: str, offering_id: uuid.UUID) -> float:
    t = time.perf_counter()
    engine = create_async_engine(db_url, pool_size=1)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as s:
            assert await closing.release_leftovers(s, offering_id)
            await s.commit()
    finally:
        await engine.dispose()
    return time.perf_counter() - t


def _profiler(phase: str, all_tasks: bool = False):  # type: ignore[no-untyped-def]
    """BENCH_PROFILE=<phase>: pyinstrument over the phase; `all_tasks`: every task of the loop (the agent's and the
    indexer's too), not only the awaiting one."""
    if os.environ.get("BENCH_PROFILE") != phase:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="disabled" if all_tasks else "enabled")
    profiler.start()
    return profiler


def _report(profiler, chars: int) -> None:  # type: ignore[no-untyped-def]
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False)[:chars])


async def check(
    sf,
    engine,
    node,
    stack,
    n: int,
    issuer: uuid.UUID,
    raw: RawRun,
    close_s: float,  # type: ignore[no-untyped-def]
    release_s: float,
    marks: dict[str, float],
    total_s: float,
) -> None:
    """Print the agent's numbers next to the raw run's, then check the outcome: every subscription SETTLED with
    tokens, cash conserved to the unit (investors, issuer, fees), indexed holdings = allocations = balanceOf."""
    async with sf() as s:
        q = lambda sql: s.execute(text(sql))  # noqa: E731
        states = dict((await q("SELECT state, count(*) FROM offering_subscriptions GROUP BY state")).all())
        alloc = (
            await q(
                "SELECT sum(allocated_cash), sum(amount), count(*) FILTER (WHERE allocated_units > 0) "
                "FROM offering_subscriptions"
            )
        ).one()
        reserved = (
            await q("SELECT coalesce(sum(balance), 0) FROM ledger_accounts WHERE kind = 'RESERVED'")
        ).scalar_one()
        users_total = (await q("SELECT sum(balance) FROM ledger_accounts WHERE owner_id IS NOT NULL")).scalar_one()
        fees = (
            await q("SELECT coalesce(sum(balance), 0) FROM ledger_accounts WHERE owner_id IS NULL AND kind = 'FEES'")
        ).scalar_one()
        issuer_cash = (
            await s.execute(
                text("SELECT coalesce(sum(balance), 0) FROM ledger_accounts WHERE owner_id = :u"), {"u": issuer}
            )
        ).scalar_one()
        # each investor: AVAILABLE = seeded - allocated cash, to the unit
        wrong_cash = (
            await q(
                "SELECT count(*) FROM offering_subscriptions s JOIN ledger_accounts a "
                "ON a.owner_id = s.user_id AND a.kind = 'AVAILABLE' "
                "WHERE a.balance <> 1000 - s.allocated_cash"
            )
        ).scalar_one()
        # each investor's wallet holds (indexed) exactly its allocation
        wrong_tokens = (
            await q(
                "SELECT count(*) FROM offering_subscriptions s LEFT JOIN holdings h "
                "ON h.holder = s.wallet_address WHERE coalesce(h.balance, 0) <> s.allocated_units"
            )
        ).scalar_one()
        ops = (
            await q(
                "SELECT count(*), sum(cardinality(tx_hashes)), min(mined_block), max(mined_block), "
                "count(DISTINCT mined_block) FROM chain_operations WHERE kind = 'offering.mint'"
            )
        ).one()
    rpc = RpcClient([node.url], chain_id=1)
    report = await verify_token(engine, rpc, 1, stack.token.address)
    await rpc.aclose()
    await engine.dispose()
    rate = n / total_s
    print(
        f"agent: close+allocation {close_s:.2f} s (then the leftovers' release, in another process: {release_s:.2f} s); all {ops[0]} "
        f"batchMint ops signed {marks['signed']:.2f}..{marks['last_signed']:.2f} s, broadcast "
        f"{marks['broadcast']:.2f}..{marks['last_broadcast']:.2f} s, all sent after {marks['sent']:.2f} s, "
        f"MINED after {marks['mined']:.2f} s (blocks {ops[2]}..{ops[3]}, {ops[4]} with mints), CONFIRMED "
        f"(indexed and final) after {total_s:.2f} s = {rate:,.0f} mints/s; {ops[1]} broadcasts"
    )
    print(
        f"ratios, same boundary: agent MINED / raw receipts {raw.mined_s / marks['mined']:.2f}; agent CONFIRMED / "
        f"raw final {raw.final_s / total_s:.2f}; strict (agent CONFIRMED / raw receipts): "
        f"{raw.mined_s / total_s:.2f}"
    )
    print(
        f"subscriptions: {states}; {alloc[2]} got tokens; allocated {alloc[0]} of {alloc[1]} asked; reserved "
        f"left {reserved}; users' cash {users_total} + fees {fees} = {users_total + fees} (seeded {n * 1000}); "
        f"issuer {issuer_cash}; investors off by a unit: {wrong_cash}; holdings off: {wrong_tokens}"
    )
    print(
        f"verify: {report.holders_checked} holders, {len(report.mismatches)} mismatches, "
        f"supply {report.total_supply} = indexed {report.indexed_sum}"
    )
    assert states == {"SETTLED": n} and alloc[2] == n, states
    assert reserved == 0 and users_total + fees == n * 1000 and issuer_cash + fees == alloc[0]
    assert wrong_cash == 0 and wrong_tokens == 0 and not report.mismatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=closing.MINT_BATCH)
    parser.add_argument("--block-time", type=int, default=1, help="seconds between blocks (anvil interval mining)")
    args = parser.parse_args()
    with (
        scratch_database("rwa_bench_issuance") as db_url,
        AnvilNode(port=free_port(), chain_id=1, slots_in_an_epoch=4) as node,
    ):
        asyncio.run(run(args.subscribers, args.batch, args.block_time, db_url, node))


if __name__ == "__main__":
    main()
