"""Agent test fixtures: a fresh database and anvil node per test (tests/indexer's), the real indexer following the
node in-process, a block producer (so finality advances), and helpers to run the executor in-process or as a
`rwa agent run` subprocess and to wait for operation states.

The agent key is anvil's account 0 (the deployer: an agent of the token and registry, owner of the stablecoin).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from agent.config import AgentConfig
from agent.executor import run_agent
from agent.outbox import enqueue
from chains.anvil import AnvilNode
from chains.deploy import transact
from core.settings import Settings
from indexer.lock import asyncpg_dsn
from indexer.service import run_indexer
from tests.indexer.conftest import (  # noqa: F401  (fixtures re-exported)
    TEST_CONFIG,
    Deployed,
    add_tokens,
    deploy,
    idx_db,
    indexer_template_db,
    node,
)

AGENT_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil account 0
FAST = AgentConfig(
    poll_s=0.05, replace_after_s=2.0, lock_retry_s=0.2, error_backoff_s=0.2, failed_backoff_s=0.5, rpc_timeout_s=10
)


@pytest.fixture
def settings(idx_db: str, node: AnvilNode, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RPC_URLS_1", node.url)
    for var in ("AGENT_PRIVATE_KEY", "TREASURY_PRIVATE_KEY", "AGENT_SIGNER_URL", "AGENT_SIGNER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return Settings(
        DATABASE_URL=idx_db,
        REDIS_URL=redis_url,
        AGENT_PRIVATE_KEY=AGENT_KEY,  # type: ignore[call-arg]
        RWA_REDIS_PREFIX=f"rwa-test:{uuid.uuid4().hex[:8]}:",
    )


@dataclass
class World:
    settings: Settings
    node: AnvilNode
    d: Deployed
    db_url: str

    @property
    def seller(self) -> str:
        return self.d.accounts[1]

    @property
    def buyer(self) -> str:
        return self.d.accounts[2]

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(self.db_url))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def enqueue_transfer(
        self,
        ref: str,
        amount: int,
        *,
        sender: str | None = None,
        receiver: str | None = None,
        kind: str = "test.transfer",
        function: str = "forcedTransfer",
    ) -> uuid.UUID:
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

        engine = create_async_engine(self.db_url)
        try:
            async with AsyncSession(engine, expire_on_commit=False) as s:
                op = await enqueue(
                    s,
                    kind=kind,
                    chain_id=1,
                    contract=self.d.stack.token.address,
                    abi_name="SecurityToken",
                    function=function,
                    args=[sender or self.seller, receiver or self.buyer, amount],
                    business_ref=ref,
                )
                await s.commit()
                return op.id
        finally:
            await engine.dispose()

    async def ops(self) -> dict[str, asyncpg.Record]:
        return {r["business_ref"]: r for r in await self.sql("SELECT * FROM chain_operations")}

    async def wait_ops(
        self,
        pred: Callable[[dict[str, asyncpg.Record]], bool],
        timeout: float = 60.0,
        tasks: tuple[asyncio.Task[Any], ...] = (),
    ) -> dict[str, asyncpg.Record]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for t in tasks:
                if t.done():
                    t.result()
                    raise AssertionError(f"{t.get_name()} ended early")
            ops = await self.ops()
            if pred(ops):
                return ops
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; ops: {[(k, v['state'], v['last_error']) for k, v in ops.items()]}")
            await asyncio.sleep(0.1)

    def transfers_on_chain(self, sender: str | None = None) -> list[dict[str, Any]]:
        """Every Transfer log of the token from the seller (straight from the node)."""
        from eth_utils import keccak

        topic = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
        frm = "0x" + "0" * 24 + (sender or self.seller)[2:].lower()
        return self.node.rpc(
            "eth_getLogs",
            {"address": self.d.stack.token.address, "fromBlock": "0x0", "toBlock": "latest", "topics": [topic, frm]},
        )


@pytest.fixture
async def world(settings: Settings, node: AnvilNode, idx_db: str) -> AsyncIterator[World]:
    d = await deploy(node.url)
    await add_tokens(idx_db, 1, d)
    reg, tok = d.stack.registry, d.stack.token
    for inv in d.accounts[1:4]:
        await transact(reg.functions.registerIdentity(inv, inv, 840), d.agent)
    await transact(tok.functions.mint(d.accounts[1], 10**24), d.agent)
    yield World(settings, node, d, idx_db)
    await d.w3.provider.disconnect()


@contextlib.asynccontextmanager
async def running(
    w: World, *, agent: bool = True, indexer: bool = True, miner: bool = True, config: AgentConfig = FAST
) -> AsyncIterator[tuple[asyncio.Task[Any], ...]]:
    """Indexer + agent in this process, and a block every 0.1 s (finality = head - 8 on these nodes)."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    if indexer:
        tasks.append(asyncio.create_task(run_indexer(w.settings, [1], stop=stop, config=TEST_CONFIG), name="indexer"))
    if agent:
        tasks.append(asyncio.create_task(run_agent(w.settings, [1], stop=stop, config=config), name="agent"))

    async def mine() -> None:
        while not stop.is_set():
            await asyncio.to_thread(w.node.mine, 1)
            await asyncio.sleep(0.1)

    if miner:
        tasks.append(asyncio.create_task(mine(), name="miner"))
    try:
        yield tuple(tasks)
    finally:
        stop.set()
        done, pending = await asyncio.wait(tasks, timeout=15)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def agent_process(
    w: World, *, crash_at: str | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`rwa agent run --chain 1` as a child process (the fault tests kill it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "TREASURY_", "RWA_AGENT_"))}
    env.update(
        DATABASE_URL=w.db_url,
        REDIS_URL=w.settings.redis_url or "",
        RPC_URLS_1=w.node.url,
        AGENT_PRIVATE_KEY=AGENT_KEY,
        RWA_AGENT_POLL_S="0.05",
        RWA_AGENT_REPLACE_AFTER_S="2",
        LOG_JSON="false",
        RWA_DATA_DIR=f"/tmp/rwa-agent-test-{uuid.uuid4().hex[:8]}",
    )
    if crash_at:
        env["RWA_AGENT_TEST_CRASH_AT"] = crash_at
    env.update(extra_env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "agent", "run", "--chain", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
