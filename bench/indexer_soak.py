"""Indexer soak: random reorgs and RPC faults for N minutes on a local anvil, then `verify`.

    .venv/bin/python -m bench.indexer_soak --minutes 10            # the documented soak
    .venv/bin/python -m bench.indexer_soak --minutes 3 --fault-rate 0.2 --seed 7

Loopback only: its own anvil (chain 1, finalized = head - 8), a fresh database on the Postgres of
BENCH_DATABASE_URL (default 127.0.0.1:5432, dropped at the end), and bench/rpc_fault_proxy.py in front of
anvil injecting every kind of bad reply at ``--fault-rate``, with a dead URL first in RPC_URLS_1.
While `rwa index run`'s pipeline follows the chain in this process, the driver sends transfers, mints and
freezes, and at random: reorgs of depth 1-5 with replacement transfers, the reorg race of issue 13
(anvil_reorg right after the proxy answered eth_getLogs), and null answers for recent blocks.
At the end the traffic stops, the indexer catches up through the faults, and every holder of both tokens
is compared with balanceOf (the same check as `rwa index verify`, plus totalSupply). Exit 0 if all match.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
from eth_utils import to_checksum_address
from web3.exceptions import TimeExhausted

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.rpc_fault_proxy import FaultProxy  # noqa: E402
from chains import anvil as anvil_rpc  # noqa: E402
from chains.anvil import AnvilNode, free_port  # noqa: E402
from chains.deploy import TransactionReverted, connect, deploy_rwa_stack, transact  # noqa: E402
from indexer.config import IndexerConfig  # noqa: E402
from indexer.lock import asyncpg_dsn  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
E18 = 10**18
TX_WAIT_S = 5.0  # automine answers at once; a receipt that never comes means a reorg dropped the tx
CONFIG = IndexerConfig(
    poll_interval_s=0.1,
    finality_depth={1: 8},
    lock_retry_s=0.2,
    error_backoff_s=0.2,
    error_backoff_max_s=3.0,
    self_check_interval_s=5.0,
    rpc_timeout_s=1.0,
    batch_events=500,
    logs_per_call=250,
)


def transfer_request(sender: str, token: str, to: str, amount: int) -> dict[str, str]:
    from eth_abi import encode
    from eth_utils import function_signature_to_4byte_selector

    data = function_signature_to_4byte_selector("transfer(address,uint256)") + encode(
        ["address", "uint256"], [to, amount]
    )
    return {"from": sender, "to": token, "data": "0x" + data.hex(), "gas": hex(300_000)}


async def fresh_db() -> tuple[str, str]:
    from core.migrate import upgrade

    name = f"rwa_soak_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    await upgrade(url)
    return name, url


async def drop_db(name: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


class Driver:
    """Random traffic and chain trouble on one deployed stack."""

    def __init__(self, node: AnvilNode, proxy: FaultProxy, stack: Any, accounts: list[str], seed: int) -> None:
        self.node, self.proxy, self.stack = node, proxy, stack
        self.agent, self.wallets = accounts[0], accounts[1:7]
        self.rng = random.Random(seed)
        self.done: Counter[str] = Counter()
        self.race_armed = False

    async def setup(self) -> None:
        token, registry, stable = self.stack.token, self.stack.registry, self.stack.stablecoin
        for i, w in enumerate(self.wallets):
            identity = to_checksum_address(f"0x{0x1D000 + i:040x}")
            await transact(registry.functions.registerIdentity(w, identity, 250), self.agent)
            await transact(token.functions.mint(w, 10_000 * E18), self.agent)
            await transact(stable.functions.mint(w, 10**12), self.agent)
        if await token.functions.paused().call():
            await transact(token.functions.unpause(), self.agent)

    async def on_forwarded(self, payload: Any, reply: Any) -> None:
        """The reorg race: replace the block(s) just read with a fork carrying a Transfer."""
        methods = [i.get("method") for i in payload] if isinstance(payload, list) else [payload.get("method")]
        if self.race_armed and "eth_getLogs" in methods:
            self.race_armed = False
            a, b = self.rng.sample(self.wallets, 2)
            await anvil_rpc.reorg(self.node.url, 1, [(transfer_request(a, self.stack.token.address, b, E18), 0)])
            self.done["reorg_race"] += 1

    async def act(self) -> None:
        try:
            await self._act()
        except TransactionReverted:
            self.done["reverted"] += 1  # e.g. a transfer of tokens a reorg took away: fine
        except TimeExhausted:
            self.done["dropped_by_reorg"] += 1  # the reorg race replaced the block that held it: fine

    async def _act(self) -> None:
        roll = self.rng.random()
        token, stable = self.stack.token, self.stack.stablecoin
        a, b = self.rng.sample(self.wallets, 2)
        if roll < 0.45:
            await transact(token.functions.transfer(b, self.rng.randint(1, 5) * E18), a, timeout=TX_WAIT_S)
            self.done["transfer"] += 1
        elif roll < 0.6:
            await transact(stable.functions.transfer(b, self.rng.randint(1, 1000)), a, timeout=TX_WAIT_S)
            self.done["stable_transfer"] += 1
        elif roll < 0.68:
            await transact(token.functions.mint(a, 100 * E18), self.agent, timeout=TX_WAIT_S)
            self.done["mint"] += 1
        elif roll < 0.74:
            frozen = await token.functions.getFrozenTokens(a).call()
            if frozen:
                await transact(token.functions.unfreezePartialTokens(a, frozen), self.agent, timeout=TX_WAIT_S)
            else:
                await transact(token.functions.freezePartialTokens(a, E18), self.agent, timeout=TX_WAIT_S)
            self.done["freeze"] += 1
        elif roll < 0.86:
            depth = self.rng.randint(1, 5)
            if self.node.block_number() > depth + 20:
                txs = [(transfer_request(a, token.address, b, E18), self.rng.randrange(depth))]
                await anvil_rpc.reorg(self.node.url, depth, txs)
                self.done[f"reorg_{depth}"] += 1
        elif roll < 0.93:
            self.race_armed = True
            await anvil_rpc.mine(self.node.url, 1)
            self.done["race_armed"] += 1
        else:
            head = self.node.block_number()
            self.proxy.answer_null(self.rng.randint(1, 3), when=lambda n, h=head: n > h - 10)
            self.done["null_blocks"] += 1


async def check(db_url: str, node_url: str, stack: Any, wallets: list[str]) -> list[str]:
    """Every holder (indexed or a driver wallet) of both tokens against balanceOf, and the supplies."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from chains.rpc import RpcClient
    from indexer.verify import verify_token

    problems: list[str] = []
    engine = create_async_engine(db_url)
    try:
        async with RpcClient([node_url], chain_id=1) as rpc:
            for contract in (stack.token, stack.stablecoin):
                report = await verify_token(engine, rpc, 1, contract.address)
                for m in report.mismatches:
                    problems.append(f"{contract.address} {m.holder}: indexed {m.indexed} != balanceOf {m.onchain}")
                if not report.supply_matches:
                    problems.append(
                        f"{contract.address}: totalSupply {report.total_supply} != indexed sum {report.indexed_sum}"
                    )
                print(
                    f"verify {contract.address}: {report.holders_checked} holders at block {report.block}: "
                    f"{'OK' if report.ok else 'MISMATCH'}"
                )
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        dupes = await conn.fetchval(
            "SELECT count(*) - count(DISTINCT (chain_id, tx_hash, log_index)) FROM chain_events"
        )
    finally:
        await conn.close()
    if dupes:
        problems.append(f"{dupes} duplicate chain events")
    return problems


async def wait_caught_up(db_url: str, node: AnvilNode, task: asyncio.Task[Any], timeout: float) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        deadline = time.monotonic() + timeout
        while True:
            if task.done():
                task.result()
                raise RuntimeError("indexer ended early")
            head = node.rpc("eth_getBlockByNumber", "latest", False)
            row = await conn.fetchrow("SELECT indexed_block, indexed_hash FROM indexer_cursors WHERE chain_id = 1")
            if row is not None and (row["indexed_block"], row["indexed_hash"]) == (
                int(head["number"], 16),
                head["hash"],
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"indexer at {row and row['indexed_block']} did not reach head "
                    f"{int(head['number'], 16)} within {timeout}s"
                )
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def soak(minutes: float, fault_rate: float, seed: int) -> int:
    from core.settings import Settings
    from indexer.service import run_indexer

    name, db_url = await fresh_db()
    try:
        with AnvilNode(1) as node:
            w3 = connect(node.url)
            accounts = list(await w3.eth.accounts)
            start = await w3.eth.block_number + 1
            stack = await deploy_rwa_stack(w3, accounts[0])
            conn = await asyncpg.connect(asyncpg_dsn(db_url))
            for address, kind, registry in (
                (stack.token.address, "SECURITY", stack.registry.address),
                (stack.stablecoin.address, "STABLECOIN", None),
            ):
                await conn.execute(
                    "INSERT INTO tokens (id, chain_id, address, kind, name, symbol, decimals, total_supply, paused, "
                    "identity_registry, start_block) VALUES ($1, 1, $2, $3, 'Soak', 'SOAK', 18, 0, false, $4, $5)",
                    uuid.uuid4(),
                    address,
                    kind,
                    registry,
                    start,
                )
            await conn.close()
            proxy = await FaultProxy(node.url, fault_rate=fault_rate, timeout_s=1.5, seed=seed).start()
            driver = Driver(node, proxy, stack, accounts, seed)
            proxy.on_forwarded = driver.on_forwarded
            await driver.setup()
            os.environ["RPC_URLS_1"] = f"http://127.0.0.1:{free_port()},{proxy.url}"  # a dead URL first
            settings = Settings(DATABASE_URL=db_url, REDIS_URL=None)  # type: ignore[call-arg]
            stop = asyncio.Event()
            task = asyncio.create_task(run_indexer(settings, [1], stop=stop, config=CONFIG))
            started = time.monotonic()
            try:
                while time.monotonic() - started < minutes * 60:
                    if task.done():
                        task.result()
                        raise RuntimeError("indexer ended early")
                    await driver.act()
                    await asyncio.sleep(driver.rng.uniform(0.05, 0.4))
                driver.race_armed = False
                await anvil_rpc.mine(node.url, 10)  # settle: the last events get a few blocks on top
                await wait_caught_up(db_url, node, task, timeout=180)
            finally:
                stop.set()
                await asyncio.wait_for(task, 60)
                await proxy.stop()
            elapsed = time.monotonic() - started
            problems = await check(db_url, node.url, stack, driver.wallets)
            print(f"soak: {elapsed / 60:.1f} min, head {node.block_number()}, fault rate {fault_rate:.0%}")
            print(f"  driver: {dict(sorted(driver.done.items()))}")
            print(
                f"  faults injected: {dict(sorted(proxy.injected.items()))} "
                f"({sum(proxy.injected.values())} of {sum(proxy.requests.values())} calls)"
            )
    finally:
        await drop_db(name)
    for p in problems:
        print(f"  MISMATCH: {p}")
    print("soak: verify OK" if not problems else f"soak: {len(problems)} problem(s)")
    return 0 if not problems else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to drive traffic and trouble")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="share of RPC requests given a fault")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--log-level", default="ERROR", help="indexer log level (WARNING shows every retry)")
    args = parser.parse_args()
    if not 0 < args.minutes <= 24 * 60 or not 0 <= args.fault_rate < 1:
        parser.error("--minutes must be in (0, 1440] and --fault-rate in [0, 1)")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(soak(args.minutes, args.fault_rate, args.seed)))


if __name__ == "__main__":
    main()
