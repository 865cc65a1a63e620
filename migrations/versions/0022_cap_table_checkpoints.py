"""cap table checkpoints

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06

Balances of a security token's holders at a finalized block, written by the worker every N transfers
(resolvers/reports/checkpoints.py), so a cap table at any block reads the nearest checkpoint's holders plus the
transfers in between instead of half the token's history.
"""

from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE cap_table_checkpoints (
            chain_id integer NOT NULL,
            token_address varchar(42) COLLATE "C" NOT NULL,
            block_number bigint NOT NULL,
            holders integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_cap_table_checkpoints PRIMARY KEY (chain_id, token_address, block_number)
        )""")
    op.execute("""
        CREATE TABLE cap_table_checkpoint_balances (
            chain_id integer NOT NULL,
            token_address varchar(42) COLLATE "C" NOT NULL,
            block_number bigint NOT NULL,
            holder varchar(42) COLLATE "C" NOT NULL,
            balance numeric(78, 0) NOT NULL,
            CONSTRAINT pk_cap_table_checkpoint_balances PRIMARY KEY (chain_id, token_address, block_number, holder)
        )""")


def downgrade() -> None:
    op.execute("DROP TABLE cap_table_checkpoint_balances")
    op.execute("DROP TABLE cap_table_checkpoints")
