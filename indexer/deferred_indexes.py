"""A first backfill into empty event tables builds their secondary indexes after the rows, not row by row.

``ix_token_transfers_from`` and ``ix_token_transfers_to`` are keyed by holder: every transfer inserts into
a random leaf of each, and with the other seven indexes of the two event tables they outgrow a small
shared_buffers, so the writing backend evicts dirty pages itself. On the Ponder comparison's chain
(200,000 Transfers to 5,010 holders, same COPY batches, load 4-5), the writing backend used 4.5-5.2 s of
CPU with them and 2.8-3.0 s without; building both afterwards took 0.55-0.61 s (plus its parallel workers'
~0.4 s). Ponder builds its indexes after its historical sync for the same reason.

Since 2026-12-06 also the other secondary indexes of both tables except ``ix_chain_events_subject`` (the
recompute of freeze and identity state reads it while the backfill writes): ``ix_token_transfers_token_block``,
``ix_token_transfers_chain_block``, ``ix_chain_events_chain_block``, ``ix_chain_events_chain_address_block`` (the two
``_chain_block`` ones are gone since migration 0024: the primary keys lead with (chain_id, block_number)). The
COPYs of the Ponder comparison's 200,000 Transfers, in-process, same rows (load 7-10): the writing backend used
3.09-3.37 s of CPU with them and 1.88-1.94 s without; building the four afterwards 0.37-0.44 s (plus its
parallel workers).

While they are missing, readers get the same rows (by the primary keys or a scan plus a filter), only slower,
and only on a database whose first history is being indexed; no statement of the backfill itself needs them
(its lookups go through the primary keys, ``ix_chain_events_subject`` and ``fetched_intervals``). The deferral:
- happens per table, only when that table is empty, and only when the session advisory lock DEFER_LOCK is free;
  the backfill holds that lock until it has rebuilt them (``restore``, in its ``finally``);
- survives a crash safely: the rows and cursor are committed as always; the indexes are rebuilt by
  ``restore`` at the start of the next `rwa index backfill` or `rwa index run` (any chain), which skips
  them only while another session holds DEFER_LOCK (a backfill deferring them right now).
The definitions below are the migrations' (0002_chain_and_tokens, 0024); tests/indexer/test_deferred_indexes.py
compares them with a migrated database's catalog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from indexer.lock import LOCK_CLASS

log = logging.getLogger(__name__)

DEFER_LOCK = (LOCK_CLASS, -1)  # pg_advisory_lock(int, int): the writer locks use (LOCK_CLASS, chain id >= 1)

DEFERRED = {
    "ix_token_transfers_from": (
        "CREATE INDEX IF NOT EXISTS ix_token_transfers_from ON public.token_transfers "
        "USING btree (chain_id, token_address, from_address, block_number)"
    ),
    "ix_token_transfers_to": (
        "CREATE INDEX IF NOT EXISTS ix_token_transfers_to ON public.token_transfers "
        "USING btree (chain_id, token_address, to_address, block_number)"
    ),
    "ix_token_transfers_token_block": (
        "CREATE INDEX IF NOT EXISTS ix_token_transfers_token_block ON public.token_transfers "
        "USING btree (chain_id, token_address, block_number, log_index)"
    ),
    "ix_chain_events_chain_address_block": (
        "CREATE INDEX IF NOT EXISTS ix_chain_events_chain_address_block ON public.chain_events "
        "USING btree (chain_id, address, block_number)"
    ),
}
TABLES = ("token_transfers", "chain_events")  # each one's deferred indexes are those whose definition names it


def table_of(name: str) -> str:
    return DEFERRED[name].split(" ON public.", 1)[1].split(" ", 1)[0]


_MISSING = """
SELECT n FROM unnest($1::text[]) AS n
WHERE NOT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'public' AND indexname = n)
"""


async def _unlock(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, $2)", *DEFER_LOCK)


async def defer(conn: asyncpg.Connection) -> bool:
    """Drop the DEFERRED indexes of each of TABLES that is empty; True if any were dropped (the caller must
    then ``restore`` them, and holds DEFER_LOCK until it does). Any obstacle (rows, a reader holding a table
    for 2 s, a role that may not drop them) leaves them in place: deferring is only an optimization."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *DEFER_LOCK):
        return False
    dropped: list[str] = []
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '2s'")
            for table in TABLES:
                if not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                    dropped += [name for name in DEFERRED if table_of(name) == table]
            if dropped:
                await conn.execute("DROP INDEX IF EXISTS " + ", ".join(dropped))
    except asyncpg.PostgresError as exc:
        log.info("event table indexes not deferred: %s", exc)
        dropped = []
    if not dropped:
        await _unlock(conn)
        return False
    log.info("empty event tables: %s are built after the backfill", ", ".join(dropped))
    return True


# Two builders: the holder-keyed pair on one connection, the others on ``conn``. A build waits for its index's
# files to be written and synced, not only for CPU; on the Ponder comparison's chain (200,000 Transfers, the four
# indexes missing, load 7) one connection took 5.5-5.9 s of wall time, two 3.3-3.4 s.
_SECOND_BUILDER = ("ix_token_transfers_from", "ix_token_transfers_to")


async def restore(
    conn: asyncpg.Connection,
    *,
    deferred_here: bool = False,
    connect: Callable[[], Awaitable[asyncpg.Connection]] | None = None,
) -> list[str]:
    """Build the DEFERRED indexes that are missing, unless another session defers them now; returns those built.
    ``deferred_here``: this session deferred them (``defer`` returned True): its DEFER_LOCK is released after.
    ``connect``: a second connection to the same database, on which _SECOND_BUILDER are built meanwhile (if it
    cannot be opened, ``conn`` builds them too)."""
    if not deferred_here and not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *DEFER_LOCK):
        return []
    try:
        missing = [r["n"] for r in await conn.fetch(_MISSING, list(DEFERRED))]
        second = [n for n in missing if n in _SECOND_BUILDER]
        other: asyncpg.Connection | None = None
        if second and len(second) < len(missing) and connect is not None:
            try:
                other = await connect()
            except (asyncpg.PostgresError, OSError) as exc:
                log.info("deferred indexes built on one connection: %s", exc)
        if other is None:
            await _build(conn, missing)
        else:
            try:
                first = [n for n in missing if n not in second]
                await asyncio.gather(_build(conn, first), _build(other, second))
            finally:
                await other.close()
        if missing and not deferred_here:
            log.warning("rebuilt %s (left missing by an interrupted backfill)", ", ".join(missing))
        return missing
    finally:
        await _unlock(conn)


async def _build(conn: asyncpg.Connection, names: list[str]) -> None:
    for name in names:
        await conn.execute(DEFERRED[name])
