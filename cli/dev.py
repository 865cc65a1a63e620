"""`rwa dev`: the whole product on one machine with no external services.

Embedded Postgres + Redis (data dir), three local anvil chains (Ethereum 1, Polygon 137, BSC 56) with a
USD stablecoin deployed on each, then the API server, the indexer and a job worker as child processes.
Ctrl-C / SIGTERM stops the children, the chains and the embedded services (nothing is left running).

Local chains are new on every start, so on-chain rows of the local chain ids from a previous run are cleared.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from cli.runtime import err

# anvil's first well-known development account; never valid outside local chains
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
LOCAL_CHAINS = (1, 137, 56)
_CHAIN_TABLES = ("token_transfers", "holdings", "identities", "chain_events", "blocks", "fetched_intervals",
                 "indexer_cursors")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen


async def reset_local_chain_rows(database_url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        for table in _CHAIN_TABLES:
            await conn.execute(text(f"DELETE FROM {table} WHERE chain_id = ANY(:ids)"), {"ids": list(LOCAL_CHAINS)})
        await conn.execute(text("DELETE FROM tokens WHERE chain_id = ANY(:ids) AND kind = 'STABLECOIN'"),
                           {"ids": list(LOCAL_CHAINS)})
    await engine.dispose()


async def seed_stablecoins(database_url: str, urls: dict[int, str]) -> dict[int, str]:
    """Deploy a 6-decimal USDC on each chain and register it as a watched stablecoin token."""
    from eth_account import Account
    from sqlalchemy.dialects.postgresql import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from chains.deploy import connect, deploy_stablecoin
    from models.tokens import Token, TokenKind

    deployer = Account.from_key(ANVIL_DEV_KEY)
    addresses: dict[int, str] = {}
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        for chain_id, url in urls.items():
            w3 = connect(url)
            start = await w3.eth.block_number
            coin = await deploy_stablecoin(w3, deployer)
            addresses[chain_id] = coin.address
            await conn.execute(insert(Token).values(
                chain_id=chain_id, address=coin.address, kind=TokenKind.STABLECOIN, name="USD Coin", symbol="USDC",
                decimals=6, start_block=start).on_conflict_do_nothing())
    await engine.dispose()
    return addresses


def _spawn(name: str, args: list[str], env: dict[str, str]) -> Child:
    rwa = shutil.which("rwa") or os.path.join(os.path.dirname(sys.executable), "rwa")
    return Child(name, subprocess.Popen([rwa, *args], env=env))


def _stop_children(children: list[Child]) -> None:
    for child in children:
        if child.proc.poll() is None:
            child.proc.terminate()
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait(5)


def run_dev(host: str, port: int, chain_ports: tuple[int, int, int] | None, with_worker: bool) -> None:
    from chains.anvil import AnvilNode, stop_nodes
    from cli.runtime import runtime

    with runtime() as settings:
        nodes = [AnvilNode(cid, port=(chain_ports[i] if chain_ports else None)) for i, cid in enumerate(LOCAL_CHAINS)]
        children: list[Child] = []
        try:
            for node in nodes:
                node.start()
            urls = {n.chain_id: n.url for n in nodes}
            asyncio.run(reset_local_chain_rows(settings.database_url or ""))
            coins = asyncio.run(seed_stablecoins(settings.database_url or "", urls))
            env = {**os.environ, **{f"RPC_URLS_{cid}": url for cid, url in urls.items()}}
            env.setdefault("DEPLOYER_PRIVATE_KEY", ANVIL_DEV_KEY)
            children.append(_spawn("api", ["serve", "--host", host, "--port", str(port)], env))
            children.append(_spawn("indexer", ["index", "run"], env))
            if with_worker:
                children.append(_spawn("worker", ["worker"], env))
            for cid, url in urls.items():
                err.print(f"[cyan]chain {cid}[/] {url}  USDC {coins[cid]}")
            err.print(f"[bold green]StableRWA dev[/]: GraphiQL at http://{host}:{port}/graphql  (Ctrl-C to stop)")
            while True:
                for child in children:
                    code = child.proc.poll()
                    if code is not None:
                        err.print(f"[red]{child.name} exited with {code}; stopping[/]")
                        raise SystemExit(code or 1)
                time.sleep(0.5)
        finally:
            _stop_children(children)
            stop_nodes(nodes)
