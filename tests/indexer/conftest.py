"""Indexer test fixtures: a fresh database per test (cloned from a migrated template), fresh anvil nodes,
helpers to deploy a stack, register it as tokens, run the indexer until it has caught up, and read state.

Fresh nodes and databases per test: indexer tests reorg, kill and compare whole tables, so they must
not share chain or row state with any other test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from web3 import AsyncWeb3

from chains.anvil import AnvilNode
from chains.deploy import RwaStack, connect, deploy_rwa_stack
from core.settings import Settings
from indexer.config import IndexerConfig
from indexer.lock import asyncpg_dsn
from tests.fixtures.db import DatabaseDrops, admin_database_url, admin_sql, fresh_database

# anvil --slots-in-an-epoch 4: finalized = head - 8; the fallback depth and reorg window match it.
TEST_CONFIG = IndexerConfig(
    poll_interval_s=0.05,
    finality_depth={1: 8, 137: 8, 56: 8},
    lock_retry_s=0.2,
    error_backoff_s=0.2,
    rpc_timeout_s=10,
)


def _url(database: str) -> str:
    return make_url(admin_database_url()).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def indexer_template_db(migrated_template: str) -> str:
    """The session's migrated template (tests/fixtures/db.py), which no one connects to, for `clone_db`."""
    return migrated_template


async def clone_db(template: str) -> str:
    name = f"rwa_idx_{uuid.uuid4().hex[:10]}"
    await admin_sql(admin_database_url(), f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


async def drop_db(name: str) -> None:
    await admin_sql(admin_database_url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def idx_db(indexer_template_db: str, database_drops: DatabaseDrops) -> AsyncIterator[str]:
    """URL of a fresh migrated database for this test (dropped in the background: a drop waits for a checkpoint)."""
    async with fresh_database(admin_database_url(), "rwa_idx", database_drops) as url:  # copies the template
        yield url


@pytest.fixture
def node() -> Iterator[AnvilNode]:
    with AnvilNode(1) as n:
        yield n


@pytest.fixture
def settings(idx_db: str, node: AnvilNode, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RPC_URLS_1", node.url)
    prefix = f"rwa-test:{uuid.uuid4().hex[:8]}:"
    return Settings(DATABASE_URL=idx_db, REDIS_URL=redis_url, RWA_REDIS_PREFIX=prefix)  # type: ignore[call-arg]


@dataclass
class Deployed:
    w3: AsyncWeb3
    stack: RwaStack
    accounts: list[str]
    start_block: int

    @property
    def agent(self) -> str:
        return self.accounts[0]


async def deploy(url: str) -> Deployed:
    w3 = connect(url)
    accounts = list(await w3.eth.accounts)
    start = await w3.eth.block_number + 1
    stack = await deploy_rwa_stack(w3, accounts[0])
    return Deployed(w3, stack, accounts, start)


async def add_tokens(db_url: str, chain_id: int, d: Deployed, *, security: bool = True, stable: bool = True) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        if security:
            await insert_token(
                conn, chain_id, d.stack.token.address, "SECURITY", 18, d.start_block, d.stack.registry.address
            )
        if stable:
            await insert_token(conn, chain_id, d.stack.stablecoin.address, "STABLECOIN", 6, d.start_block, None)
    finally:
        await conn.close()


async def insert_token(
    conn: asyncpg.Connection,
    chain_id: int,
    address: str,
    kind: str,
    decimals: int,
    start_block: int,
    registry: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO tokens (id, chain_id, address, kind, name, symbol, decimals, total_supply, paused, "
        "identity_registry, start_block) VALUES ($1, $2, $3, $4, '', '', $5, 0, false, $6, $7)",
        uuid.uuid4(),
        chain_id,
        address,
        kind,
        decimals,
        registry,
        start_block,
    )


async def cursor_block(db_url: str, chain_id: int) -> int | None:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        return await conn.fetchval("SELECT indexed_block FROM indexer_cursors WHERE chain_id = $1", chain_id)
    finally:
        await conn.close()


async def wait_synced(
    db_url: str, heads: dict[int, Any], timeout: float = 20.0, task: asyncio.Task[Any] | None = None
) -> None:
    """Until every chain's cursor reached its node's head (``heads``: chain id -> AnvilNode)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if task is not None and task.done():
            task.result()
            raise AssertionError("indexer ended before catching up")
        ok = True
        for cid, n in heads.items():
            cur = await cursor_block(db_url, cid)
            if cur is None or cur < n.block_number():
                ok = False
        if ok:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"indexer did not catch up within {timeout}s")
        await asyncio.sleep(0.05)


async def table_rows(db_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


SNAPSHOT_QUERIES = {
    "chain_events": "SELECT chain_id, block_hash, log_index, block_number, tx_hash, tx_index, address, event, topics, "
    "data, args::text, subject FROM chain_events ORDER BY 1, 4, 3",
    "token_transfers": "SELECT * FROM token_transfers ORDER BY chain_id, block_number, log_index",
    "holdings": "SELECT * FROM holdings ORDER BY 1, 2, 3",
    "identities": "SELECT * FROM identities ORDER BY 1, 2, 3",
    "tokens": "SELECT chain_id, address, total_supply, paused FROM tokens ORDER BY 1, 2",
    "event_blocks": "SELECT b.* FROM blocks b WHERE EXISTS (SELECT 1 FROM chain_events e WHERE e.chain_id = b.chain_id "
    "AND e.block_hash = b.hash) ORDER BY 1, 2",
    "fetched_intervals": "SELECT * FROM fetched_intervals ORDER BY 1, 2, 3",
    "cursor": "SELECT chain_id, indexed_block, indexed_hash FROM indexer_cursors ORDER BY 1",
}


async def snapshot(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {name: await table_rows(db_url, sql) for name, sql in SNAPSHOT_QUERIES.items()}


async def assert_matches_chain(db_url: str, chain_id: int, d: Deployed, extra_holders: tuple[str, ...] = ()) -> int:
    """INVARIANT 1 and friends: every indexed holding (and every address ever involved) equals the
    contract views; paused, total supply and identity entries too. Returns the holders checked."""
    token, registry, stable = d.stack.token, d.stack.registry, d.stack.stablecoin
    mine = [token.address, stable.address]
    rows = await table_rows(
        db_url,
        "SELECT token_address, holder, balance, frozen_amount, frozen FROM holdings "
        "WHERE chain_id = $1 AND token_address = ANY($2::text[])",
        chain_id,
        mine,
    )
    held = {(r[0], r[1]): r for r in rows}
    involved = await table_rows(
        db_url,
        "SELECT DISTINCT token_address, a FROM token_transfers, LATERAL (VALUES (from_address), (to_address)) v(a) "
        "WHERE chain_id = $1 AND token_address = ANY($2::text[]) AND a <> '0x0000000000000000000000000000000000000000'",
        chain_id,
        mine,
    )
    keys = set(held) | {(t, a) for t, a in involved} | {(token.address, h) for h in extra_holders}
    for tok_addr, holder in sorted(keys):
        contract = token if tok_addr == token.address else stable
        bal = await contract.functions.balanceOf(holder).call()
        got = held.get((tok_addr, holder))
        if got is None:  # never involved: nothing to index, the chain must agree
            assert bal == 0 and not await token.functions.isFrozen(holder).call(), holder
            continue
        assert int(got[2]) == bal, f"{holder} on {tok_addr}: indexed {got[2]} != balanceOf {bal}"
        if contract is token:
            assert int(got[3]) == await token.functions.getFrozenTokens(holder).call(), holder
            assert got[4] == await token.functions.isFrozen(holder).call(), holder
    tokens = await table_rows(
        db_url,
        "SELECT address, total_supply, paused FROM tokens WHERE chain_id = $1 AND address = ANY($2::text[])",
        chain_id,
        mine,
    )
    for addr, supply, paused in tokens:
        contract = token if addr == token.address else stable
        assert int(supply) == await contract.functions.totalSupply().call(), addr
        if contract is token:
            assert paused == await token.functions.paused().call()
    for _reg, investor, identity, country, registered in await table_rows(
        db_url,
        "SELECT registry_address, investor, identity, country, registered FROM identities "
        "WHERE chain_id = $1 AND registry_address = $2",
        chain_id,
        registry.address,
    ):
        assert registered == await registry.functions.isVerified(investor).call(), investor
        if registered:
            assert identity == await registry.functions.identity(investor).call(), investor
            assert country == await registry.functions.investorCountry(investor).call(), investor
    return len(keys)


async def wait_at_head(
    db_url: str, chain_id: int, n: AnvilNode, timeout: float = 20.0, task: asyncio.Task[Any] | None = None
) -> None:
    """Until the cursor is exactly the node's head block (number and hash): a reorg was handled."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if task is not None and task.done():
            task.result()
            raise AssertionError("indexer ended")
        head = n.rpc("eth_getBlockByNumber", "latest", False)
        rows = await table_rows(
            db_url, "SELECT indexed_block, indexed_hash FROM indexer_cursors WHERE chain_id = $1", chain_id
        )
        if rows and rows[0] == (int(head["number"], 16), head["hash"]):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"cursor {rows} never reached head {int(head['number'], 16)}")
        await asyncio.sleep(0.05)


def transfer_request(sender: str, token: str, to: str, amount: int) -> dict[str, str]:
    """A transfer(to, amount) tx request for an unlocked account (anvil_reorg replacement txs)."""
    from eth_abi import encode
    from eth_utils import function_signature_to_4byte_selector

    data = function_signature_to_4byte_selector("transfer(address,uint256)") + encode(
        ["address", "uint256"], [to, amount]
    )
    return {"from": sender, "to": token, "data": "0x" + data.hex(), "gas": hex(300_000)}
