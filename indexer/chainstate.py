"""What the follower reads before each step: the node's head/safe/finalized, the watched set, the cursor."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from chains.rpc import RpcClient
from chains.spec import ChainSpec
from indexer.events import checksum


@dataclass(frozen=True, slots=True)
class Heads:
    head: int
    safe: int
    finalized: int


async def read_heads(client: RpcClient, spec: ChainSpec, depth: int, use_tags: bool = True) -> Heads:
    """The node's ``finalized``/``safe`` tags where served, else head - depth (safe: head - depth/2)."""
    if use_tags and spec.supports_finality_tags:
        got = await client.batch(
            [
                ("eth_blockNumber", []),
                ("eth_getBlockByNumber", ["finalized", False]),
                ("eth_getBlockByNumber", ["safe", False]),
            ],
            return_exceptions=True,
        )
        if isinstance(got[0], Exception):
            raise got[0]
        head = int(got[0], 16)
        fin = int(got[1]["number"], 16) if isinstance(got[1], dict) else None
        safe = int(got[2]["number"], 16) if isinstance(got[2], dict) else None
        if fin is not None:
            return Heads(head, safe if safe is not None else fin, fin)
    else:
        head = await client.block_number()
    return Heads(head, max(0, head - max(1, depth // 2)), max(0, head - depth))


@dataclass(frozen=True, slots=True)
class Cursor:
    indexed_block: int
    indexed_hash: str | None
    finalized_block: int | None


async def load_cursor(conn: asyncpg.Connection, chain_id: int) -> Cursor | None:
    row = await conn.fetchrow(
        "SELECT indexed_block, indexed_hash, finalized_block FROM indexer_cursors WHERE chain_id = $1", chain_id
    )
    return None if row is None else Cursor(row["indexed_block"], row["indexed_hash"], row["finalized_block"])


async def save_heads(conn: asyncpg.Connection, chain_id: int, heads: Heads) -> None:
    await conn.execute(
        "UPDATE indexer_cursors SET head_block = $2, safe_block = $3, finalized_block = $4, updated_at = now() "
        "WHERE chain_id = $1",
        chain_id,
        heads.head,
        heads.safe,
        heads.finalized,
    )


async def load_watched(conn: asyncpg.Connection, chain_id: int) -> dict[str, int]:
    """Every token of the chain (security tokens and stablecoins) and the identity registries they
    reference, each with the block its history starts at (a registry: its earliest token's start)."""
    rows = await conn.fetch("SELECT address, start_block, identity_registry FROM tokens WHERE chain_id = $1", chain_id)
    watched: dict[str, int] = {}
    for r in rows:
        for addr in (r["address"], r["identity_registry"]):
            if addr:
                addr = checksum(addr)
                watched[addr] = min(watched.get(addr, r["start_block"]), r["start_block"])
    return watched
