"""Write stage: one decoded batch -> one Postgres transaction, on the chain's own asyncpg connection (or a
savepoint in the pipeline's transaction, which several batches share while the writer is behind: then the
balance deltas are summed in a PendingBalances and applied once before that transaction commits).

In that transaction: blocks (checked against the stored hash chain), raw events and token
transfers (COPY into temp tables, then INSERT ... ON CONFLICT DO NOTHING), derived state from
the rows actually inserted (replaying a range changes nothing), the fetched intervals of the
addresses covered, and, when the batch extends the chain's cursor, the cursor itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from indexer import intervals, pgtime
from indexer.copy_binary import copy_source, encode_events, encode_transfers
from indexer.decode import BLOCK_COLUMNS, EVENT_COLUMNS, TRANSFER_COLUMNS, DecodedBatch
from indexer.errors import ReorgDetected
from indexer.events import ZERO_ADDRESS
from indexer.state import INSERT_TRANSFERS_SQL, recompute_for_events

_TEMP_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS _bl (LIKE blocks) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _ev (LIKE chain_events) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _tt (LIKE token_transfers) ON COMMIT DELETE ROWS;
"""

_INSERT_BLOCKS = "INSERT INTO blocks SELECT * FROM _bl ON CONFLICT (chain_id, number) DO NOTHING"
_BLOCK_MISMATCH = """
SELECT b.number FROM _bl JOIN blocks b ON b.chain_id = _bl.chain_id AND b.number = _bl.number
WHERE b.hash <> _bl.hash ORDER BY b.number LIMIT 1
"""
_INSERT_EVENTS = f"""
WITH ins AS (
    INSERT INTO chain_events ({", ".join(EVENT_COLUMNS)}) SELECT {", ".join(EVENT_COLUMNS)} FROM _ev
    ON CONFLICT DO NOTHING RETURNING event, address, subject)
SELECT event, address, subject, count(*) AS n FROM ins GROUP BY event, address, subject
"""


_ANY_FETCHED = """
SELECT EXISTS (SELECT 1 FROM fetched_intervals
               WHERE chain_id = $1 AND address = ANY($2::text[]) AND to_block >= $3 AND from_block <= $4)
"""
_ADD_BALANCES = """
INSERT INTO holdings AS t (chain_id, token_address, holder, balance, frozen_amount, frozen, updated_block)
SELECT $1, u.token, u.holder, u.delta, 0, false, u.blk
FROM unnest($2::text[], $3::text[], $4::numeric[], $5::bigint[]) AS u(token, holder, delta, blk)
ON CONFLICT (chain_id, token_address, holder) DO UPDATE
    SET balance = t.balance + excluded.balance, updated_block = greatest(t.updated_block, excluded.updated_block)
"""
_ADD_SUPPLY = """
UPDATE tokens t SET total_supply = t.total_supply + u.minted, updated_at = now()
FROM unnest($2::text[], $3::numeric[]) AS u(token, minted)
WHERE t.chain_id = $1 AND lower(t.address) = lower(u.token)
"""

Written = tuple[Counter[str], list[tuple[str, str, str | None]], int]


async def _copy_events(conn: asyncpg.Connection, table: str, batch: DecodedBatch) -> None:
    """COPY the batch's events: those the decode stage encoded already, then its row tuples as
    indexer/copy_binary.py encodes them (asyncpg's codecs cost the writer 2x the CPU)."""
    source = copy_source(batch.events, encode_events, batch.event_copy)
    await conn.copy_to_table(table, source=source, columns=EVENT_COLUMNS, format="binary")


async def _copy_transfers(conn: asyncpg.Connection, table: str, batch: DecodedBatch) -> None:
    source = copy_source(batch.transfers, encode_transfers, batch.transfer_copy)
    await conn.copy_to_table(table, source=source, columns=TRANSFER_COLUMNS, format="binary")


async def _write_replay(conn: asyncpg.Connection, batch: DecodedBatch) -> Written:
    """Rows may exist already: insert through temp tables ON CONFLICT DO NOTHING; derived deltas
    come from the rows actually inserted (RETURNING), so a replay changes nothing."""
    by_event: Counter[str] = Counter()
    touched: list[tuple[str, str, str | None]] = []
    if batch.n_events:
        await _copy_events(conn, "_ev", batch)
        for r in await conn.fetch(_INSERT_EVENTS):
            by_event[r["event"]] += r["n"]
            if r["subject"] is not None:
                touched.append((r["event"], r["address"], r["subject"]))
    transfers = 0
    if batch.n_transfers:
        await _copy_transfers(conn, "_tt", batch)
        transfers = (await conn.fetchrow(INSERT_TRANSFERS_SQL, batch.chain_id))["transfers"]
    return by_event, touched, transfers


class PendingBalances:
    """Balance and supply deltas of fresh batches, summed in memory until ``apply`` (in the same transaction
    as the batches' rows and cursor). Several batches may share one: one holdings upsert per distinct
    (token, holder) of all of them, instead of one per batch (issue 16: a holdings row update is a new row
    version plus index entries, and a realistic batch touches thousands of distinct holders)."""

    __slots__ = ("deltas", "minted")

    def __init__(self) -> None:
        self.deltas: dict[tuple[str, str], list[int]] = {}  # (token, holder) -> [delta, last block]
        self.minted: dict[str, int] = {}

    def add(self, transfers: list[tuple[Any, ...]]) -> None:
        deltas, minted = self.deltas, self.minted
        for t in transfers:
            token, frm, to, value, blk = t[6], t[7], t[8], t[9], t[3]
            if frm == ZERO_ADDRESS:
                minted[token] = minted.get(token, 0) + value
            else:
                d = deltas.get((token, frm))
                if d is None:
                    deltas[(token, frm)] = [-value, blk]
                else:
                    d[0] -= value
                    d[1] = blk
            if to == ZERO_ADDRESS:
                minted[token] = minted.get(token, 0) - value
            else:
                d = deltas.get((token, to))
                if d is None:
                    deltas[(token, to)] = [value, blk]
                else:
                    d[0] += value
                    d[1] = blk

    def merge(self, deltas: dict[tuple[str, str], list[int]], minted: dict[str, int]) -> None:
        """Add deltas summed by the decode stage (indexer/decode.py's fast path: a batch's standard Transfers). The
        first batch's dicts are taken as they are."""
        if not self.deltas:
            self.deltas = deltas
        else:
            mine = self.deltas
            for key, (delta, blk) in deltas.items():
                d = mine.get(key)
                if d is None:
                    mine[key] = [delta, blk]
                else:
                    d[0] += delta
                    if blk > d[1]:
                        d[1] = blk
        if not self.minted:
            self.minted = minted
        else:
            for token, m in minted.items():
                self.minted[token] = self.minted.get(token, 0) + m

    async def apply(self, conn: asyncpg.Connection, chain_id: int) -> None:
        """Write the summed deltas (sorted by key: concurrent writers lock rows in one order) and forget them."""
        if self.deltas:
            keys = sorted(self.deltas)
            await conn.execute(
                _ADD_BALANCES,
                chain_id,
                [k[0] for k in keys],
                [k[1] for k in keys],
                [self.deltas[k][0] for k in keys],
                [self.deltas[k][1] for k in keys],
            )
        moved = sorted((tok, m) for tok, m in self.minted.items() if m)
        if moved:
            await conn.execute(_ADD_SUPPLY, chain_id, [m[0] for m in moved], [m[1] for m in moved])
        self.deltas, self.minted = {}, {}


async def _write_fresh(conn: asyncpg.Connection, batch: DecodedBatch, pending: PendingBalances) -> Written | None:
    """No address of the batch was ever fetched over its range, so none of its rows can exist:
    COPY straight into the tables and sum balances in memory (``pending``; the fast path of backfills).
    None if a row exists after all (intervals edited by hand): the caller replays instead."""
    try:
        async with conn.transaction():  # a savepoint: undone alone on a duplicate
            await _copy_events(conn, "chain_events", batch)
            if batch.n_transfers:
                await _copy_transfers(conn, "token_transfers", batch)
    except asyncpg.UniqueViolationError:
        return None
    by_event: Counter[str] = Counter(batch.fast_by_event)
    touched: list[tuple[str, str, str | None]] = list(batch.fast_touched)
    for ev in batch.events:
        by_event[ev[7]] += 1
        if ev[11] is not None:
            touched.append((ev[7], ev[6], ev[11]))
    pending.add(batch.transfers)
    pending.merge(batch.deltas, batch.minted)
    return by_event, touched, batch.n_transfers


# The recompute queries look up each touched (contract, subject) by the partial subject index. On a table
# that grew by a bulk COPY since its last ANALYZE (a fresh backfill: no statistics at all), the planner
# estimates 1 row per contract and picks the (chain_id, address, block_number) index instead, filtering
# every event of the contract for each key: 5,000 identity registrations in one batch took 53 s instead
# of 0.1 s (bench/indexer_backfill.py --shape realistic). So before a recompute of many keys, statistics
# are refreshed when the table has grown by more than STATS_GROWTH since they were taken (inside the
# transaction, so the batch's own rows count); the table grows geometrically between two refreshes, so a
# backfill runs O(log n) of them. STATS_GROWTH was 1.2 (6 ANALYZEs, 0.45 s of the writer's time in a 3.5 s
# realistic 50,000-event call); at 2 it is 3 (0.18-0.26 s), and estimates at most 2x low still pick the
# subject index (tests/indexer/test_write_planner.py); the recompute statements took as long (load 9-10).
# Only the columns the lookups filter on are analyzed: 0.21-0.27 s against 1.10-1.19 s for the whole row
# (args, topics and data are the costly columns) at 50,000 events, where the full ANALYZE was a quarter of
# a realistic backfill's wall time. A column list leaves n_mod_since_analyze alone, so growth is read from
# the table's pages against those of the last ANALYZE.
_STALE_STATS_SQL = """
SELECT c.reltuples, c.relpages, pg_relation_size(c.oid) / current_setting('block_size')::int AS pages
FROM pg_class c WHERE c.oid = 'chain_events'::regclass
"""
# And from a sample of 3,000 rows (statistics target 10, for this transaction only) instead of 30,000: the lookups
# need the table's size and about how many rows a (contract, subject) key has, which the small sample gives (the
# plans stay on the subject index, tests/indexer/test_write_planner.py); 0.025-0.034 s against 0.20-0.26 s per
# ANALYZE at 50,000 realistic events (load 9-10), two or three of them per such backfill. Autovacuum's own ANALYZE
# (default target) takes over once the backfill is done.
_ANALYZE_SQL = (
    "SET LOCAL default_statistics_target = 10; ANALYZE chain_events (chain_id, address, subject, event, block_number)"
)
STATS_GROWTH = 2.0
_MANY_KEYS = 50  # fewer lookups than this cost less than an ANALYZE even with a bad plan


async def refresh_planner_stats(conn: asyncpg.Connection, keys: int) -> bool:
    """ANALYZE chain_events' lookup columns when ``keys`` lookups are coming and its statistics lag the table;
    True if run."""
    if keys < _MANY_KEYS:
        return False
    row = await conn.fetchrow(_STALE_STATS_SQL)
    if row["reltuples"] >= 0 and row["pages"] <= STATS_GROWTH * max(row["relpages"], 1):
        return False
    await conn.execute(_ANALYZE_SQL)
    return True


@dataclass(frozen=True, slots=True)
class WriteResult:
    events: int  # raw events newly inserted
    transfers: int
    by_event: Mapping[str, int]


async def prepare_connection(conn: asyncpg.Connection) -> None:
    await conn.execute(_TEMP_TABLES)
    await pgtime.install(conn)  # the decode stage's block times (indexer/pgtime.py)


async def ensure_cursor(conn: asyncpg.Connection, chain_id: int, indexed_block: int) -> None:
    await conn.execute(
        "INSERT INTO indexer_cursors (chain_id, indexed_block) VALUES ($1, $2) ON CONFLICT (chain_id) DO NOTHING",
        chain_id,
        indexed_block,
    )


async def write_batch(
    conn: asyncpg.Connection,
    batch: DecodedBatch,
    *,
    address_starts: Mapping[str, int],
    move_cursor: bool,
    pending: PendingBalances | None = None,
) -> WriteResult:
    """Write ``batch`` for the addresses in ``address_starts`` (address -> its start block).

    With ``move_cursor`` the batch must start right after the cursor and extend its hash
    (else ReorgDetected); the cursor then moves to the batch's end in the same transaction.
    With ``pending`` the caller holds a transaction open over several batches: the fresh path's
    balance deltas are added to it, and the caller applies them before it commits (see
    indexer/pipeline.py); else they are applied here, in the batch's own transaction.
    """
    chain_id = batch.chain_id
    own = pending is None
    if pending is None:
        pending = PendingBalances()
    async with conn.transaction():
        if move_cursor:
            row = await conn.fetchrow(
                "SELECT indexed_block, indexed_hash FROM indexer_cursors WHERE chain_id = $1 FOR UPDATE", chain_id
            )
            if row is None or row["indexed_block"] != batch.from_block - 1:
                got = None if row is None else row["indexed_block"]
                raise ReorgDetected(
                    chain_id, batch.from_block, f"cursor is at {got}, batch starts at {batch.from_block}"
                )
            if batch.first_parent is not None and row["indexed_hash"] and batch.first_parent != row["indexed_hash"]:
                raise ReorgDetected(chain_id, batch.from_block, "parent hash differs from the indexed block's hash")
        if batch.blocks:
            await conn.copy_records_to_table("_bl", records=batch.blocks, columns=BLOCK_COLUMNS)
            await conn.execute(_INSERT_BLOCKS)
            bad = await conn.fetchval(_BLOCK_MISMATCH)
            if bad is not None:
                raise ReorgDetected(chain_id, bad, "fetched block hash differs from the stored one")
        fresh = batch.n_events and not await conn.fetchval(
            _ANY_FETCHED, chain_id, list(address_starts), batch.from_block, batch.to_block
        )
        written = await _write_fresh(conn, batch, pending) if fresh else None
        if written is None:
            written = await _write_replay(conn, batch)
        by_event, touched, transfers = written
        if touched:
            await refresh_planner_stats(conn, len(touched))
            await recompute_for_events(conn, chain_id, touched)
        await intervals.extend(conn, chain_id, address_starts, batch.from_block, batch.to_block)
        if own:
            await pending.apply(conn, chain_id)
        if move_cursor:
            await conn.execute(
                "UPDATE indexer_cursors SET indexed_block = $2, indexed_hash = $3, updated_at = now() WHERE chain_id = $1",
                chain_id,
                batch.to_block,
                batch.end_hash,
            )
    return WriteResult(sum(by_event.values()), transfers, dict(by_event))
