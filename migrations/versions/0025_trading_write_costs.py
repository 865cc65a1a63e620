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
- The foreign keys of ``ledger_entries`` (to its transaction and account) checked each entry with one query and one
  row lock (three entries per trade, on account rows the same statement has just updated): ~40 us per order. The
  statement-level balance trigger (migration 0004) now checks the same set-wise, once per distinct transaction and
  account of the statement (usually 1-3 accounts), locking them FOR KEY SHARE as the foreign keys did; deleting or
  re-keying a transaction or account that entries refer to is refused by triggers on those tables (the foreign
  keys' NO ACTION), and so is truncating them while entries exist. Same error code (23503) as before.
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


_BALANCED = """
        CREATE OR REPLACE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE bad record;
        BEGIN
            SELECT transaction_id, currency, sum(amount) AS total INTO bad FROM new_rows
            GROUP BY transaction_id, currency HAVING sum(amount) <> 0 LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'ledger transaction % does not balance in % (sum %)',
                    bad.transaction_id, bad.currency, bad.total USING ERRCODE = 'check_violation';
            END IF;{refs}
            RETURN NULL;
        END $$"""
# what the foreign keys checked entry by entry, once per distinct key (a scalar subquery: one index lookup each, never
# a scan of the referenced table); FOR KEY SHARE holds off a concurrent delete until this transaction ends
_REFS = """
            SELECT x.id INTO bad FROM (SELECT DISTINCT {column} AS id FROM new_rows) x
            WHERE (SELECT r.id FROM {table} r WHERE r.id = x.id FOR KEY SHARE) IS NULL LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'ledger_entries.{column} % is not in {table}', bad.id
                    USING ERRCODE = 'foreign_key_violation';
            END IF;"""
_REFERENCED = (("ledger_transactions", "transaction_id"), ("ledger_accounts", "account_id"))


def upgrade() -> None:
    _trigger("WHEN (NEW.market_sequence IS NULL) ")
    op.execute("DROP INDEX ix_trades_maker_order_id")
    op.execute("DROP INDEX ix_trades_taker_order_id")
    op.execute("DROP INDEX ix_settlement_instructions_pending")

    refs = "".join(_REFS.format(table=t, column=c) for t, c in _REFERENCED)
    op.execute(_BALANCED.format(refs=refs))
    for table, column in _REFERENCED:
        op.execute(f"ALTER TABLE ledger_entries DROP CONSTRAINT fk_ledger_entries_{column}_{table}")
        # deleted rows still referenced (statement level: the transition table of the deleted rows), a referenced row
        # re-keyed (row level, only when an UPDATE sets id to another value: balance updates never call it), a
        # truncation while entries exist
        op.execute(f"""
            CREATE FUNCTION rwa_{table}_referenced() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE bad record;
            BEGIN
                IF TG_OP = 'TRUNCATE' THEN
                    IF EXISTS (SELECT FROM ledger_entries) THEN
                        RAISE EXCEPTION 'cannot truncate {table}: ledger_entries refer to it'
                            USING ERRCODE = 'foreign_key_violation';
                    END IF;
                    RETURN NULL;
                ELSIF TG_OP = 'UPDATE' THEN
                    SELECT OLD.id AS id INTO bad FROM ledger_entries e WHERE e.{column} = OLD.id LIMIT 1;
                ELSE
                    SELECT o.id INTO bad FROM old_rows o
                    WHERE (SELECT e.id FROM ledger_entries e WHERE e.{column} = o.id LIMIT 1) IS NOT NULL LIMIT 1;
                END IF;
                IF FOUND THEN
                    RAISE EXCEPTION '{table} % is referenced by ledger_entries ({column})', bad.id
                        USING ERRCODE = 'foreign_key_violation';
                END IF;
                IF TG_OP = 'UPDATE' THEN
                    RETURN NEW;
                END IF;
                RETURN NULL;
            END $$""")
        op.execute(f"""
            CREATE TRIGGER {table}_referenced_delete AFTER DELETE ON {table}
            REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION rwa_{table}_referenced()""")
        op.execute(f"""
            CREATE TRIGGER {table}_referenced_update BEFORE UPDATE OF id ON {table}
            FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION rwa_{table}_referenced()""")
        op.execute(f"""
            CREATE TRIGGER {table}_referenced_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION rwa_{table}_referenced()""")


def downgrade() -> None:
    for table, column in reversed(_REFERENCED):
        for event in ("truncate", "update", "delete"):
            op.execute(f"DROP TRIGGER {table}_referenced_{event} ON {table}")
        op.execute(f"DROP FUNCTION rwa_{table}_referenced()")
        op.execute(f"""
            ALTER TABLE ledger_entries ADD CONSTRAINT fk_ledger_entries_{column}_{table}
            FOREIGN KEY ({column}) REFERENCES {table} (id)""")
    op.execute(_BALANCED.format(refs=""))
    op.execute(f"""
        CREATE INDEX ix_settlement_instructions_pending ON settlement_instructions (chain_id, token_address, from_wallet)
        WHERE {_OPEN}""")
    op.execute("CREATE INDEX ix_trades_taker_order_id ON trades (taker_order_id)")
    op.execute("CREATE INDEX ix_trades_maker_order_id ON trades (maker_order_id)")
    _trigger("")
