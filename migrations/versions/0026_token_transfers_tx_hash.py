"""token transfers by transaction hash

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07

``myTrades`` reads each trade's chain leg (resolvers/trading/settlement._CHAIN_LEGS); when the leg's operation has
no mined block yet it falls back to ``min(block_number) FROM token_transfers WHERE chain_id = ... AND tx_hash = ...``.
No index of ``token_transfers`` starts with (chain_id, tx_hash) (its key is (chain_id, block_number, log_index,
block_hash); the others start with (chain_id, token_address)), so every such trade scanned the chain's transfers:
the indexer's table, the largest of the database. ``ix_token_transfers_tx_hash`` (chain_id, tx_hash, block_number)
answers it with one index descent, the block number read from the index (min = the first entry).

Plain CREATE INDEX, not CONCURRENTLY: `rwa migrate` runs every pending migration in one transaction (migrations/env.py,
transaction_per_migration=False, under the migration lock and MIGRATION_LOCK_TIMEOUT_S), and CONCURRENTLY cannot run
inside a transaction block; no migration here uses it. The build holds a SHARE lock on token_transfers (the indexer's
inserts wait; reads do not) for as long as one sorted pass over the table takes.
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_token_transfers_tx_hash ON token_transfers (chain_id, tx_hash, block_number)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_token_transfers_tx_hash")
