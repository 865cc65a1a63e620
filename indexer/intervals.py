"""Fetched block intervals per watched address (fetched_intervals), kept merged.

They make backfills resumable and let a token added later catch up to the cursor on its own:
``gaps`` says what of [lo, hi] an address still misses.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

Interval = tuple[int, int]


def merge(spans: list[Interval]) -> list[Interval]:
    """Union of inclusive intervals; adjacent ones join."""
    out: list[Interval] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def gaps(covered: list[Interval], lo: int, hi: int) -> list[Interval]:
    """The parts of [lo, hi] not inside ``covered`` (merged)."""
    out: list[Interval] = []
    pos = lo
    for a, b in merge(covered):
        if b < pos:
            continue
        if a > hi:
            break
        if a > pos:
            out.append((pos, min(a - 1, hi)))
        pos = max(pos, b + 1)
        if pos > hi:
            break
    if pos <= hi:
        out.append((pos, hi))
    return out


async def load(conn: asyncpg.Connection, chain_id: int) -> dict[str, list[Interval]]:
    rows = await conn.fetch(
        "SELECT address, from_block, to_block FROM fetched_intervals WHERE chain_id = $1 ORDER BY from_block", chain_id
    )
    out: dict[str, list[Interval]] = {}
    for r in rows:
        out.setdefault(r["address"], []).append((r["from_block"], r["to_block"]))
    return out


async def extend(conn: asyncpg.Connection, chain_id: int, address_starts: Mapping[str, int], lo: int, hi: int) -> None:
    """Record [max(lo, start), hi] as fetched for each address, merging with what touches it."""
    for address, start in address_starts.items():
        a = max(lo, start)
        if a > hi:
            continue
        rows = await conn.fetch(
            "DELETE FROM fetched_intervals WHERE chain_id = $1 AND address = $2 AND to_block >= $3 AND from_block <= $4 "
            "RETURNING from_block, to_block",
            chain_id,
            address,
            a - 1,
            hi + 1,
        )
        spans = merge([(a, hi), *[(r["from_block"], r["to_block"]) for r in rows]])
        await conn.executemany(
            "INSERT INTO fetched_intervals (chain_id, address, from_block, to_block) VALUES ($1, $2, $3, $4)",
            [(chain_id, address, x, y) for x, y in spans],
        )


async def truncate_above(conn: asyncpg.Connection, chain_id: int, block: int) -> None:
    """Forget everything fetched above ``block`` (reorg rollback)."""
    await conn.execute("DELETE FROM fetched_intervals WHERE chain_id = $1 AND from_block > $2", chain_id, block)
    await conn.execute(
        "UPDATE fetched_intervals SET to_block = $2 WHERE chain_id = $1 AND to_block > $2", chain_id, block
    )
