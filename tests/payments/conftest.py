"""On-chain payment fixtures: a fresh migrated database (committed rows: the indexer and the jobs use their own
connections), a fresh anvil node with a deployed stablecoin registered as a STABLECOIN token, the indexer running
in-process, and helpers to create payments, pay them and wait for states."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from web3 import AsyncWeb3
from web3.contract import AsyncContract

from chains.anvil import AnvilNode
from chains.deploy import connect, deploy_stablecoin, transact
from core.hd_wallet import DepositWallet
from core.settings import Environment, Settings
from indexer.config import IndexerConfig
from indexer.service import run_indexer
from jobs import context as job_context
from models.identity import User
from models.payments import Payment, PaymentMethod, PaymentState
from resolvers.payments import intents, notify
from tests.fixtures.db import DatabaseDrops, admin_database_url, fresh_database

INDEXER_CONFIG = IndexerConfig(
    poll_interval_s=0.05, finality_depth={1: 8}, lock_retry_s=0.2, error_backoff_s=0.2, rpc_timeout_s=10
)
TEST_MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"
USDC = 10**6


@pytest.fixture
async def pay_db(migrated_template: str, database_drops: DatabaseDrops) -> AsyncIterator[str]:
    """A fresh migrated database per test (a copy of the session's template), dropped in the background after."""
    async with fresh_database(admin_database_url(), "rwa_pay", database_drops) as url:
        yield url


@pytest.fixture
def chain() -> Iterator[AnvilNode]:
    with AnvilNode(1) as node:
        yield node


@pytest.fixture
def pay_settings(
    pay_db: str, chain: AnvilNode, redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> Iterator[Settings]:
    monkeypatch.setenv("RPC_URLS_1", chain.url)
    s = Settings(
        RWA_ENV=Environment.TEST,
        DATABASE_URL=pay_db,
        REDIS_URL=redis_url,  # type: ignore[call-arg]
        RWA_REDIS_PREFIX=f"rwa-test:{uuid.uuid4().hex[:8]}:",
        RWA_DATA_DIR=str(tmp_path / "data"),
        HD_WALLET_MNEMONIC=TEST_MNEMONIC,
        WEBHOOK_SECRET=secrets.token_hex(32),
    )
    job_context.configure(s)
    yield s
    job_context.configure(None)


@pytest.fixture
async def factory(pay_db: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(pay_db, pool_size=5)
    yield async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    await engine.dispose()


@dataclass
class Rig:
    """Everything an on-chain payment test touches."""

    settings: Settings
    node: AnvilNode
    w3: AsyncWeb3
    stablecoin: AsyncContract
    payer: str
    factory: async_sessionmaker[AsyncSession]
    user_id: uuid.UUID
    stop: asyncio.Event
    indexer: asyncio.Task[None] | None = None

    async def create(self, amount: str, *, expires_in: int = 3600, key: str | None = None) -> Payment:
        async with self.factory() as s:
            p, _ = await intents.create_payment(
                s,
                DepositWallet(TEST_MNEMONIC),
                user_id=self.user_id,
                amount=Decimal(amount),
                currency="USDC",
                method=PaymentMethod.STABLECOIN,
                idempotency_key=key or uuid.uuid4().hex,
                chain_id=1,
                token=self.stablecoin.address,
                expires_in=expires_in,
            )
            await notify.commit(s, None, "")
            return p

    async def pay(self, payment: Payment, units: int) -> int:
        """Send `units` to the deposit address; returns the block number."""
        receipt = await transact(self.stablecoin.functions.transfer(payment.deposit_address, units), self.payer)
        return int(receipt["blockNumber"])

    async def payment(self, pid: uuid.UUID) -> Payment:
        async with self.factory() as s:
            return (await s.execute(select(Payment).where(Payment.id == pid))).scalar_one()

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.factory() as s:
            return (await s.execute(text(sql), params)).scalar()

    async def wait(self, what: Callable[[], Awaitable[bool]], timeout: float = 20.0, step: float = 0.05) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await what():
            if self.indexer is not None and self.indexer.done():
                self.indexer.result()
                raise AssertionError("indexer stopped")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(step)

    async def wait_indexed(self, block: int) -> None:
        async def done() -> bool:
            return (await self.scalar("SELECT indexed_block FROM indexer_cursors WHERE chain_id = 1") or -1) >= block

        await self.wait(done)

    async def wait_final(self, block: int) -> None:
        """Mine past finality (anvil: finalized = head - 8) and wait until the indexer recorded it."""
        self.node.mine(max(0, block + 8 - self.node.block_number()) + 1)

        async def done() -> bool:
            return (
                await self.scalar(
                    "SELECT LEAST(finalized_block, indexed_block) FROM indexer_cursors WHERE chain_id = 1"
                )
                or -1
            ) >= block

        await self.wait(done)

    async def credits(self, pid: uuid.UUID) -> int:
        return await self.scalar(
            "SELECT count(*) FROM ledger_transactions WHERE reference = :r", r=f"payment:{pid}:credit"
        )

    async def available(self) -> Decimal:
        return await self.scalar(
            "SELECT coalesce(sum(balance), 0) FROM ledger_accounts WHERE owner_id = :u "
            "AND kind = 'AVAILABLE' AND currency = 'USDC'",
            u=self.user_id,
        ) or Decimal(0)

    async def ledger_balanced(self) -> bool:
        return await self.scalar(
            "SELECT coalesce(bool_and(t = 0), true) FROM (SELECT sum(balance) t "
            "FROM ledger_accounts GROUP BY currency) x"
        )


@pytest.fixture
async def rig(
    pay_settings: Settings, chain: AnvilNode, factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Rig]:
    w3 = connect(chain.url)
    accounts = list(await w3.eth.accounts)
    start = await w3.eth.block_number + 1
    stable = await deploy_stablecoin(w3, accounts[0])
    payer = accounts[1]
    await transact(stable.functions.mint(payer, 1_000_000 * USDC), accounts[0])
    user_id = uuid.uuid4()
    async with factory() as s:
        await s.execute(
            text(
                "INSERT INTO tokens (id, chain_id, address, kind, name, symbol, decimals, total_supply, paused, start_block)"
                " VALUES (:id, 1, :a, 'STABLECOIN', 'USD Coin', 'USDC', 6, 0, false, :b)"
            ),
            {"id": uuid.uuid4(), "a": stable.address, "b": start},
        )
        s.add(User(id=user_id, email=f"payer-{user_id.hex[:8]}@example.com", password_hash="x"))
        await s.commit()
    stop = asyncio.Event()
    r = Rig(pay_settings, chain, w3, stable, payer, factory, user_id, stop)
    r.indexer = asyncio.create_task(run_indexer(pay_settings, [1], stop=stop, config=INDEXER_CONFIG))
    try:
        yield r
    finally:
        stop.set()
        try:
            if r.indexer is not None:
                await asyncio.wait_for(r.indexer, 15)
        finally:
            await w3.provider.disconnect()


def state_is(rig: Rig, pid: uuid.UUID, *states: PaymentState) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await rig.payment(pid)).state in states

    return check
