"""A chain's health, recorded durably by its running writer in ``indexer_cursors`` for `rwa index status`
and GraphQL ``indexerStatus``:

- ``stopped_reason``/``stopped_at``: the chain stopped and will not go on by itself (ReorgTooDeep: a block
  below the finality floor changed; an operator must look);
- ``error_count``/``last_error``/``last_error_at``: the run of consecutive failed steps the follower is
  retrying through (a dead RPC provider, a database hiccup). FAILING_AFTER of them in a row make the
  chain "failing" (`state_of`, models/index_status.py, reads them back).

Both are cleared by the next step that succeeds, so a fixed chain reads healthy again without a hand edit.
The writes use the writer's own connection outside any transaction, and are best effort: losing a health
write must not stop indexing.
"""

from __future__ import annotations

import logging

import asyncpg

log = logging.getLogger(__name__)

_MAX_TEXT = 500  # error texts are one-line summaries (RPC errors carry redacted URLs only)

# The cursor row may not exist yet (a chain that failed before its first step): create it unindexed.
_UPSERT = """
INSERT INTO indexer_cursors AS c (chain_id, indexed_block, {cols}) VALUES ($1, -1, {vals})
ON CONFLICT (chain_id) DO UPDATE SET {sets}
"""
_STOP_SQL = _UPSERT.format(
    cols="stopped_reason, stopped_at",
    vals="$2, now()",
    sets="stopped_reason = excluded.stopped_reason, stopped_at = excluded.stopped_at",
)
_ERROR_SQL = _UPSERT.format(
    cols="error_count, last_error, last_error_at",
    vals="1, $2, now()",
    sets="error_count = c.error_count + 1, last_error = excluded.last_error, last_error_at = excluded.last_error_at",
)
_HEALTHY_SQL = """
UPDATE indexer_cursors SET stopped_reason = NULL, stopped_at = NULL, error_count = 0, last_error = NULL,
    last_error_at = NULL
WHERE chain_id = $1 AND (stopped_reason IS NOT NULL OR error_count <> 0)
"""


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


async def _write(conn: asyncpg.Connection, sql: str, *args: object) -> bool:
    if conn.is_closed():
        return False
    try:
        await conn.execute(sql, *args)
        return True
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        log.warning("chain %s: could not record indexer health (%s)", args[0], exc)
        return False


async def record_stop(conn: asyncpg.Connection, chain_id: int, exc: BaseException) -> None:
    """The chain stops here (ReorgTooDeep)."""
    await _write(conn, _STOP_SQL, chain_id, describe(exc))


async def record_error(conn: asyncpg.Connection, chain_id: int, exc: BaseException) -> None:
    """One more failed step in a row."""
    await _write(conn, _ERROR_SQL, chain_id, describe(exc))


async def record_healthy(conn: asyncpg.Connection, chain_id: int) -> bool:
    """A step succeeded: forget the stop and the error run (one cheap UPDATE that matches nothing when healthy)."""
    return await _write(conn, _HEALTHY_SQL, chain_id)
