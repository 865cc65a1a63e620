"""`rwa dev`'s local chains persist in its data dir, so a restart continues the same chains.

Each anvil runs with ``--state <data dir>/chains/anvil-<id>.json``: it loads the file at start and writes it
back when it stops (SIGTERM/SIGINT), and every STATE_INTERVAL_S seconds, so even a kill -9 loses only the
last few seconds of blocks. Restarted, a chain keeps its blocks, hashes, contracts and the deployer's nonces:
token rows, assets and OPEN markets keep pointing at the contracts they were made for.

What a restart must reconcile (``reconcile``), per chain, before the indexer starts:
- a chain started without a state (first run, file deleted or unreadable) is new: the rows indexed from the
  old chain go (the indexer re-indexes), as do the demo tokens (re-seeded);
- a restored chain that lost its last blocks (kill -9 between two dumps) no longer has the block under the
  indexer's cursor: the index is rolled back to the highest stored block the chain still has, as a reorg
  would be (the indexer then re-follows); demo tokens whose contract went with the lost blocks are re-seeded;
- on both, the deployer's nonce is moved past every contract address a token row names: a new deployment
  can never land on an address an old row (an asset's token, a market) points at, which would make
  `tokenizeAsset` fail with "this token contract is already registered" and aim the old rows at a stranger.
Token rows whose contract is gone are reported (they are an operator's to retire), never silently re-aimed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import rlp
from eth_utils import keccak, to_checksum_address

log = logging.getLogger(__name__)

STATE_DIR = "chains"
STATE_INTERVAL_S = 2  # a kill -9 loses at most about this much chain history
NONCE_LOOKAHEAD = 5_000  # deployer nonces checked for a collision with a registered address
_CHAIN_TABLES = (
    "token_transfers",
    "holdings",
    "identities",
    "chain_events",
    "blocks",
    "fetched_intervals",
    "indexer_cursors",
    "indexer_backfill_requests",
)


def state_path(data_dir: Path, chain_id: int) -> Path:
    return data_dir / STATE_DIR / f"anvil-{chain_id}.json"


def anvil_args(data_dir: Path, chain_id: int) -> list[str]:
    path = state_path(data_dir, chain_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    return ["--state", str(path), "--state-interval", str(STATE_INTERVAL_S)]


def has_state(data_dir: Path, chain_id: int) -> bool:
    path = state_path(data_dir, chain_id)
    return path.is_file() and path.stat().st_size > 0


def set_aside(data_dir: Path, chain_id: int) -> Path | None:
    """Move an unreadable state file out of the way (kept for inspection); the chain then starts new."""
    path = state_path(data_dir, chain_id)
    if not path.exists():
        return None
    aside = path.with_suffix(".unreadable.json")
    path.replace(aside)
    return aside


def create_address(deployer: str, nonce: int) -> str:
    """The address CREATE gives the ``nonce``-th deployment of ``deployer``."""
    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(deployer[2:]), nonce]))[12:])


@dataclass(frozen=True)
class Reconciled:
    chain_id: int
    restored: bool
    rolled_back_to: int | None = None  # the index was rolled back to this block (the chain lost blocks)
    reset: bool = False  # the chain is new: its indexed rows went
    nonce_moved_to: int | None = None
    lost_tokens: tuple[str, ...] = ()  # registered token addresses with no code on the chain


async def _rpc(client, url: str, method: str, *params: object) -> object:
    from chains.anvil import rpc

    return await rpc(url, method, *params, client=client)


async def reconcile(
    database_url: str, urls: dict[int, str], restored: dict[int, bool], deployer: str
) -> list[Reconciled]:
    import asyncpg
    import httpx

    from indexer.lock import asyncpg_dsn

    out: list[Reconciled] = []
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for chain_id, url in urls.items():
                out.append(await _reconcile_chain(conn, client, chain_id, url, restored[chain_id], deployer))
    finally:
        await conn.close()
    return out


async def _reconcile_chain(
    conn,
    client,
    chain_id: int,
    url: str,
    restored: bool,
    deployer: str,
) -> Reconciled:
    rolled_back_to: int | None = None
    reset = not restored
    if restored:
        cursor = await conn.fetchrow(
            "SELECT indexed_block, indexed_hash FROM indexer_cursors WHERE chain_id = $1", chain_id
        )
        if cursor is not None and cursor["indexed_hash"] is not None and cursor["indexed_block"] >= 0:
            blk = await _rpc(client, url, "eth_getBlockByNumber", hex(cursor["indexed_block"]), False)
            if not isinstance(blk, dict) or blk["hash"] != cursor["indexed_hash"]:
                rolled_back_to = await _heal_index(conn, client, chain_id, url)
                reset = rolled_back_to is None
    async with conn.transaction():
        if reset:
            for table in _CHAIN_TABLES:
                await conn.execute(f"DELETE FROM {table} WHERE chain_id = $1", chain_id)
        # demo tokens (stablecoins, security tokens no asset or market uses) without a contract are re-seeded
        tokens = await conn.fetch(
            "SELECT t.id, t.address, (t.kind = 'STABLECOIN' OR (t.asset_id IS NULL AND NOT EXISTS "
            "(SELECT 1 FROM markets m WHERE m.base_token_id = t.id))) AS demo FROM tokens t WHERE t.chain_id = $1",
            chain_id,
        )
        lost: list[str] = []
        for t in tokens:
            if await _rpc(client, url, "eth_getCode", t["address"], "latest") in ("0x", None):
                if t["demo"]:
                    await conn.execute("DELETE FROM tokens WHERE id = $1", t["id"])
                else:
                    lost.append(t["address"])
    nonce_moved_to = await _skip_registered_addresses(conn, client, chain_id, url, deployer)
    result = Reconciled(chain_id, restored, rolled_back_to, reset, nonce_moved_to, tuple(lost))
    if rolled_back_to is not None:
        log.warning(
            "chain %s lost blocks since its last state dump; index rolled back to block %s", chain_id, rolled_back_to
        )
    if lost:
        log.warning(
            "chain %s: registered tokens without a contract on the chain (lost with its history): %s",
            chain_id,
            ", ".join(lost),
        )
    return result


async def _heal_index(conn, client, chain_id: int, url: str) -> int | None:
    """Roll the index back to the highest stored block the chain still has; None if none is left."""
    from indexer.reorg import rollback

    rows = await conn.fetch("SELECT number, hash FROM blocks WHERE chain_id = $1 ORDER BY number DESC", chain_id)
    head = int(str(await _rpc(client, url, "eth_blockNumber")), 16)
    for r in rows:
        if r["number"] > head:
            continue
        blk = await _rpc(client, url, "eth_getBlockByNumber", hex(r["number"]), False)
        if isinstance(blk, dict) and blk["hash"] == r["hash"]:
            await rollback(conn, chain_id, r["number"], r["hash"])
            return int(r["number"])
    return None


async def _skip_registered_addresses(
    conn,
    client,
    chain_id: int,
    url: str,
    deployer: str,
) -> int | None:
    """Move the deployer's nonce past the highest nonce whose CREATE address a token row names."""
    rows = await conn.fetch(
        "SELECT address FROM tokens WHERE chain_id = $1 UNION SELECT identity_registry FROM tokens "
        "WHERE chain_id = $1 AND identity_registry IS NOT NULL",
        chain_id,
    )
    registered = {to_checksum_address(r["address"]) for r in rows}
    if not registered:
        return None
    nonce = int(str(await _rpc(client, url, "eth_getTransactionCount", deployer, "latest")), 16)
    taken = [n for n in range(nonce, nonce + NONCE_LOOKAHEAD) if create_address(deployer, n) in registered]
    if not taken:
        return None
    await _rpc(client, url, "anvil_setNonce", deployer, hex(max(taken) + 1))
    log.warning(
        "chain %s: deployer nonce moved from %s to %s (addresses of registered tokens)", chain_id, nonce, max(taken) + 1
    )
    return max(taken) + 1


async def existing_demo(database_url: str, chain_ids: list[int]) -> dict[int, tuple[str, str, str]]:
    """chain id -> (USDC, DREF, registry) addresses of the demo contracts a previous run seeded (still there)."""
    import asyncpg

    from indexer.lock import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT s.chain_id, s.address AS usdc, d.address AS dref, d.identity_registry AS registry "
            "FROM tokens s JOIN tokens d ON d.chain_id = s.chain_id AND d.kind = 'SECURITY' AND d.symbol = 'DREF' "
            "AND d.asset_id IS NULL AND d.identity_registry IS NOT NULL "
            "WHERE s.chain_id = ANY($1::int[]) AND s.kind = 'STABLECOIN' AND s.symbol = 'USDC' "
            "ORDER BY s.chain_id, s.start_block DESC, d.start_block DESC",
            chain_ids,
        )
    finally:
        await conn.close()
    out: dict[int, tuple[str, str, str]] = {}
    for r in rows:
        out.setdefault(r["chain_id"], (r["usdc"], r["dref"], r["registry"]))
    return out
