"""trading write costs

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07

What a batch of placements (resolvers/trading/batch_sql.WRITE) costs Postgres per order, measured by replaying
captured batches of ~48 orders / ~24 trades into copies of one database, interleaved batch by batch, backend CPU
from /proc/<pid>/schedstat: the per-row BEFORE INSERT trigger of migration 0020 (one plpgsql call and one update of
the market's row per trade, a new row version each) was ~35-40 us per order of ~270-310; an index ~1-4 us.

- The trade sequence trigger fires only for a trade inserted without `market_sequence` (WHEN, evaluated without
  calling the function). The batch write numbers its trades itself: one update of the market's row adds the batch's
  trade count and returns the value before it, and trade n of the batch (fill order) gets that + n, under the same
  market lock and row lock as before, so the sequence stays gapless and in `seq` order. Other writers (one order's
  trades, tests) still leave it NULL and get it from the trigger.
- ``ix_trades_maker_order_id`` and ``ix_trades_taker_order_id``: no query looks trades up by order (the API lists a
  market's trades by (market_id, seq) and a user's by buyer_id/seller_id); orders are never deleted nor re-keyed, so
  the foreign keys' referencing side needs no index either.
- ``ix_settlement_instructions_pending`` (chain, token, from_wallet of unfinished legs): the gate reads
  ``settlement_outgoing`` and ``ix_settlement_instructions_pending_hash`` since migration 0023; nothing else filters
  by the seller's wallet.
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_OPEN = "status IN ('PENDING', 'SUBMITTED')"


def _trigger(when: str) -> None:
    op.execute("DROP TRIGGER trades_market_sequence ON trades")
    op.execute(f"""
        CREATE TRIGGER trades_market_sequence BEFORE INSERT ON trades
        FOR EACH ROW {when}EXECUTE FUNCTION rwa_trade_market_sequence()""")


def upgrade() -> None:
    _trigger("WHEN (NEW.market_sequence IS NULL) ")
    op.execute("DROP INDEX ix_trades_maker_order_id")
    op.execute("DROP INDEX ix_trades_taker_order_id")
    op.execute("DROP INDEX ix_settlement_instructions_pending")


def downgrade() -> None:
    op.execute(f"""
        CREATE INDEX ix_settlement_instructions_pending ON settlement_instructions (chain_id, token_address, from_wallet)
        WHERE {_OPEN}""")
    op.execute("CREATE INDEX ix_trades_taker_order_id ON trades (taker_order_id)")
    op.execute("CREATE INDEX ix_trades_maker_order_id ON trades (maker_order_id)")
    _trigger("")
