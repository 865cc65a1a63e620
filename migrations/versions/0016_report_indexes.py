"""report indexes

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

Cap tables at a date (resolvers/reports/cap_table.py) resolve the date to the last stored block at or before it:
one probe of (chain_id, timestamp, number) instead of a walk down the block numbers. Blocks are stored only when
they carry events (or sit in the reorg window), so the index costs the indexer one entry per such block.
"""

from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_blocks_chain_timestamp ON blocks (chain_id, timestamp, number)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_blocks_chain_timestamp")
