"""market trade sequence

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

Each market numbers its trades 1, 2, 3... (`trades.market_sequence`, from `markets.trade_sequence`), so the
`trades` subscription can carry a per-market sequence in which a gap means a lost message (the global `seq` has
gaps between any two trades of a market). A BEFORE INSERT trigger assigns it: trades are inserted under the
market's matching lock, in the transaction that already updates the market's row (its book sequence), so the
extra row update waits for nothing. Existing trades are numbered in `seq` order.
"""

from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE markets ADD COLUMN trade_sequence bigint NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE trades ADD COLUMN market_sequence bigint")
    op.execute("""
        UPDATE trades t SET market_sequence = r.n
        FROM (SELECT id, row_number() OVER (PARTITION BY market_id ORDER BY seq) AS n FROM trades) r
        WHERE t.id = r.id""")
    op.execute("""
        UPDATE markets m SET trade_sequence = s.n
        FROM (SELECT market_id, max(market_sequence) AS n FROM trades GROUP BY market_id) s
        WHERE m.id = s.market_id""")
    op.execute("ALTER TABLE trades ALTER COLUMN market_sequence SET NOT NULL")
    op.execute("CREATE UNIQUE INDEX ux_trades_market_sequence ON trades (market_id, market_sequence)")
    op.execute("""
        CREATE FUNCTION rwa_trade_market_sequence() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE markets SET trade_sequence = trade_sequence + 1 WHERE id = NEW.market_id
            RETURNING trade_sequence INTO NEW.market_sequence;
            RETURN NEW;
        END $$""")
    op.execute("""
        CREATE TRIGGER trades_market_sequence BEFORE INSERT ON trades
        FOR EACH ROW EXECUTE FUNCTION rwa_trade_market_sequence()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER trades_market_sequence ON trades")
    op.execute("DROP FUNCTION rwa_trade_market_sequence()")
    op.execute("DROP INDEX ux_trades_market_sequence")
    op.execute("ALTER TABLE trades DROP COLUMN market_sequence")
    op.execute("ALTER TABLE markets DROP COLUMN trade_sequence")
