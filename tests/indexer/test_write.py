"""The write stage alone, on synthetic decoded batches: one transaction, idempotent, cursor checks."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from indexer.decode import TRANSFER_COLUMNS, DecodedBatch
from indexer.errors import ReorgDetected
from indexer.events import ZERO_ADDRESS
from indexer.lock import asyncpg_dsn
from indexer.reorg import rollback
from indexer.write import ensure_cursor, prepare_connection, write_batch
from tests.indexer.conftest import insert_token

TOKEN = "0x" + "11" * 20
A, B = "0x" + "aa" * 20, "0x" + "bb" * 20
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _h(n: int) -> str:
    return "0x" + f"{n:064x}"


def batch(lo: int, hi: int, transfers: list[tuple[int, int, str, str, int]], parent: str | None = None) -> DecodedBatch:
    """transfers: (block, log index, from, to, value); every block lo..hi present, hash = _h(block)."""
    b = DecodedBatch(1, lo, hi, _h(hi))
    b.blocks = [(1, n, _h(n), parent if (n == lo and parent) else _h(n - 1), NOW) for n in range(lo, hi + 1)]
    b.first_hash, b.first_parent = _h(lo), b.blocks[0][3]
    for blk, li, frm, to, value in transfers:
        args = f'{{"from": "{frm}", "to": "{to}", "value": "{value}"}}'
        b.events.append((1, _h(blk), li, blk, _h(10**6 + li), 0, TOKEN, "Transfer", [], "0x", args, None))
        b.transfers.append((1, _h(blk), li, blk, NOW, _h(10**6 + li), TOKEN, frm, to, value))
    return b


@pytest.fixture
async def conn(idx_db: str) -> asyncpg.Connection:
    c = await asyncpg.connect(asyncpg_dsn(idx_db))
    await insert_token(c, 1, TOKEN, "SECURITY", 18, 10, None)
    await prepare_connection(c)
    await ensure_cursor(c, 1, 9)
    yield c
    await c.close()


async def _state(c: asyncpg.Connection) -> tuple[object, ...]:
    holdings = [tuple(r) for r in await c.fetch("SELECT holder, balance FROM holdings ORDER BY holder")]
    supply = await c.fetchval("SELECT total_supply FROM tokens")
    cursor = tuple(await c.fetchrow("SELECT indexed_block, indexed_hash FROM indexer_cursors"))
    n = await c.fetchval("SELECT count(*) FROM chain_events")
    return holdings, supply, cursor, n


async def test_write_is_idempotent_and_moves_the_cursor(conn: asyncpg.Connection) -> None:
    starts = {TOKEN: 10}
    b1 = batch(10, 12, [(10, 0, ZERO_ADDRESS, A, 100), (11, 0, A, B, 30), (12, 1, B, ZERO_ADDRESS, 5)])
    r = await write_batch(conn, b1, address_starts=starts, move_cursor=True)
    assert (r.events, r.transfers) == (3, 3)
    first = await _state(conn)
    assert first == ([(A, 70), (B, 25)], 95, (12, _h(12)), 3)
    # replay of the same rows (intervals forgotten, so the fast path hits the duplicates and falls back)
    await conn.execute("DELETE FROM fetched_intervals")
    r = await write_batch(conn, b1, address_starts=starts, move_cursor=False)
    assert (r.events, r.transfers) == (0, 0)
    assert await _state(conn) == first
    # a partly new batch: only the new rows count
    b2 = batch(10, 13, [(11, 0, A, B, 30), (13, 0, A, B, 1)])
    r = await write_batch(conn, b2, address_starts=starts, move_cursor=False)
    assert (r.events, r.transfers) == (1, 1)
    assert (await _state(conn))[0] == [(A, 69), (B, 26)]


async def test_a_batch_that_does_not_extend_the_cursor_is_refused(conn: asyncpg.Connection) -> None:
    starts = {TOKEN: 10}
    await write_batch(conn, batch(10, 12, [(10, 0, ZERO_ADDRESS, A, 100)]), address_starts=starts, move_cursor=True)
    before = await _state(conn)
    with pytest.raises(ReorgDetected):  # parent of block 13 is not the indexed block 12's hash
        await write_batch(
            conn, batch(13, 14, [(13, 0, A, B, 1)], parent=_h(999)), address_starts=starts, move_cursor=True
        )
    with pytest.raises(ReorgDetected):  # a gap after the cursor
        await write_batch(conn, batch(15, 16, [(15, 0, A, B, 1)]), address_starts=starts, move_cursor=True)
    assert await _state(conn) == before  # nothing of the refused batches was written


def _fork(b: DecodedBatch, lo: int) -> DecodedBatch:
    """``b`` with the hashes of blocks ``lo`` and above replaced: another fork at the same heights and log indexes."""

    def h(n: int, old: str) -> str:
        return "0x" + "f" + old[3:] if n >= lo else old

    out = DecodedBatch(b.chain_id, b.from_block, b.to_block, h(b.to_block, b.end_hash))
    out.blocks = [(c, n, h(n, x), h(n - 1, p), t) for c, n, x, p, t in b.blocks]
    out.first_hash, out.first_parent = out.blocks[0][2], out.blocks[0][3]
    out.events = [(e[0], h(e[3], e[1]), *e[2:]) for e in b.events]
    out.transfers = [(t[0], h(t[3], t[1]), *t[2:]) for t in b.transfers]
    return out


async def test_event_keys_keep_forks_apart_and_rollbacks_follow_them(conn: asyncpg.Connection) -> None:
    """Migration 0024 keys chain_events and token_transfers by (chain_id, block_number, log_index, block_hash): the
    same log index at the same height in a block of another hash is another log (a fork), not a duplicate, and a
    rollback by block number removes it; the fork's rows then write as new ones."""
    starts = {TOKEN: 10}
    main = batch(10, 12, [(10, 0, ZERO_ADDRESS, A, 100), (11, 0, A, B, 30), (12, 1, B, ZERO_ADDRESS, 5)])
    await write_batch(conn, main, address_starts=starts, move_cursor=True)
    for table in ("chain_events", "token_transfers"):
        key = await conn.fetchval(
            "SELECT array_agg(a.attname ORDER BY k.i) FROM pg_index x CROSS JOIN unnest(x.indkey) WITH ORDINALITY k(att, i)"
            " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.att"
            " WHERE x.indrelid = $1::regclass AND x.indisprimary",
            table,
        )
        assert key == ["chain_id", "block_number", "log_index", "block_hash"]
    fork = _fork(main, 11)

    class Undo(Exception):
        pass

    insert = "WITH i AS (INSERT INTO token_transfers SELECT * FROM _tt ON CONFLICT DO NOTHING RETURNING 1) "
    insert += "SELECT count(*) FROM i"
    with pytest.raises(Undo):  # the replay path's insert, undone after (the indexer rolls back before a fork)
        async with conn.transaction():
            await conn.copy_records_to_table("_tt", records=fork.transfers[1:], columns=TRANSFER_COLUMNS)
            assert await conn.fetchval(insert) == 2  # another block hash at the same heights: new logs
            await conn.execute("DELETE FROM _tt")
            await conn.copy_records_to_table("_tt", records=main.transfers, columns=TRANSFER_COLUMNS)
            assert await conn.fetchval(insert) == 0  # the same logs again: duplicates
            raise Undo
    await rollback(conn, 1, 10, _h(10))
    assert await conn.fetchval("SELECT count(*) FROM chain_events") == 1
    assert await conn.fetchval("SELECT count(*) FROM token_transfers") == 1
    tail = _fork(batch(11, 12, [(11, 0, A, B, 30), (12, 1, B, ZERO_ADDRESS, 5)]), 11)
    r = await write_batch(conn, tail, address_starts=starts, move_cursor=True)
    assert (r.events, r.transfers) == (2, 2)
    hashes = [r[0] for r in await conn.fetch("SELECT block_hash FROM chain_events ORDER BY block_number, log_index")]
    assert hashes == [_h(10), tail.blocks[0][2], tail.blocks[1][2]]
    assert (await _state(conn))[:3] == ([(A, 70), (B, 25)], 95, (12, tail.end_hash))
