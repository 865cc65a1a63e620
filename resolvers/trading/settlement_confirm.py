"""Many confirmed settlement transfers at once: `apply_transfer_result(confirmed=True)` for each, set-based.

A batch operation of the agent confirms up to a few hundred trades in one transaction; doing them one by one
(instruction and trade locked, an audit row, a flush: ~5 round trips each) made the confirmation the slowest step.
Here it is one statement: the unfinished instructions CONFIRMED with their tx hash, their trades SETTLED, one
`trade.settled` audit row per trade (the same details as the single path), returning what changed. Finished
instructions (CONFIRMED or FAILED) are left alone, so a replay changes nothing. Does not commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from resolvers.raw_sql import pg

_CONFIRM = """
WITH v AS (SELECT * FROM unnest($1::uuid[], $2::varchar[]) AS v(id, tx)),
     i AS (UPDATE settlement_instructions s SET status = 'CONFIRMED', tx_hash = coalesce(v.tx, s.tx_hash),
                                                updated_at = now()
           FROM v WHERE s.id = v.id AND s.status NOT IN ('CONFIRMED', 'FAILED')
           RETURNING s.id, s.trade_id, s.tx_hash),
     t AS (UPDATE trades tr SET settlement = 'SETTLED', failure_reason = NULL FROM i WHERE tr.id = i.trade_id
           RETURNING tr.id, tr.market_id, tr.buyer_id, tr.seller_id, i.id AS instruction_id, i.tx_hash),
     a AS (INSERT INTO audit_log (actor_id, action, target_type, target_id, request_id, details)
           SELECT NULL, 'trade.settled', 'trade', t.id::text, NULL,
                  jsonb_build_object('instruction', t.instruction_id::text, 'txHash', t.tx_hash) FROM t)
SELECT id, market_id, buyer_id, seller_id, instruction_id, tx_hash FROM t"""


@dataclass(frozen=True)
class SettledRow:
    trade_id: uuid.UUID
    market_id: uuid.UUID
    buyer_id: uuid.UUID
    seller_id: uuid.UUID
    instruction_id: uuid.UUID
    tx_hash: str | None


async def confirm_transfers(session: AsyncSession, results: list[tuple[uuid.UUID, str | None]]) -> list[SettledRow]:
    """(instruction id, tx hash) pairs whose transfer is indexed and final -> the trades that became SETTLED."""
    if not results:
        return []
    await session.flush()  # the ORM's pending changes first: this runs on the session's own connection
    rows = await (await pg(session)).fetch(_CONFIRM, [i for i, _ in results], [h for _, h in results])
    return [SettledRow(*r) for r in rows]
