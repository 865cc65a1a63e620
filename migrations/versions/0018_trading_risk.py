"""trading risk controls and market makers

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

Per-market risk limits and halt state (models.trading.MarketRiskLimits), the per-investor daily order value
counter, designated market makers with their fee tier and quoting obligations, and the samples of their quotes;
partial indexes for the maximum-position check (a user's open orders, incoming settlement legs).
"""

from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE market_risk_limits (
            market_id uuid PRIMARY KEY REFERENCES markets (id),
            price_band_bps integer,
            reference_price numeric(38, 18),
            max_order_quantity numeric(38, 18),
            max_order_notional numeric(38, 18),
            daily_notional_limit numeric(38, 18),
            max_position numeric(38, 18),
            breaker_move_bps integer,
            breaker_window_s integer,
            breaker_halt_s integer,
            halted_until timestamptz,
            halt_reason varchar(40),
            updated_by uuid,
            updated_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute("CREATE INDEX ix_market_risk_limits_halted_until ON market_risk_limits (halted_until) "
               "WHERE halted_until IS NOT NULL")
    op.execute("""
        CREATE TABLE investor_daily_notional (
            market_id uuid NOT NULL REFERENCES markets (id),
            user_id uuid NOT NULL REFERENCES users (id),
            day date NOT NULL,
            notional numeric(38, 18) NOT NULL,
            PRIMARY KEY (market_id, user_id, day)
        )""")
    op.execute("""
        CREATE TABLE market_makers (
            market_id uuid NOT NULL REFERENCES markets (id),
            user_id uuid NOT NULL REFERENCES users (id),
            maker_fee_bps integer NOT NULL,
            taker_fee_bps integer NOT NULL,
            max_spread_bps integer NOT NULL,
            min_quote_size numeric(38, 18) NOT NULL,
            min_uptime numeric(5, 4) NOT NULL,
            active boolean NOT NULL,
            updated_by uuid,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (market_id, user_id)
        )""")
    op.execute("""
        CREATE TABLE market_maker_samples (
            market_id uuid NOT NULL REFERENCES markets (id),
            user_id uuid NOT NULL REFERENCES users (id),
            sampled_at timestamptz NOT NULL,
            bid numeric(38, 18),
            ask numeric(38, 18),
            bid_size numeric(38, 18) NOT NULL,
            ask_size numeric(38, 18) NOT NULL,
            spread_bps numeric(12, 4),
            compliant boolean NOT NULL,
            PRIMARY KEY (market_id, user_id, sampled_at)
        )""")
    op.execute("CREATE INDEX ix_orders_user_open ON orders (user_id, market_id) "
               "WHERE status IN ('NEW', 'PARTIALLY_FILLED')")
    op.execute("CREATE INDEX ix_settlement_instructions_pending_to ON settlement_instructions "
               "(chain_id, token_address, to_wallet) WHERE status IN ('PENDING', 'SUBMITTED')")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_settlement_instructions_pending_to")
    op.execute("DROP INDEX IF EXISTS ix_orders_user_open")
    op.execute("DROP TABLE IF EXISTS market_maker_samples")
    op.execute("DROP TABLE IF EXISTS market_makers")
    op.execute("DROP TABLE IF EXISTS investor_daily_notional")
    op.execute("DROP TABLE IF EXISTS market_risk_limits")
