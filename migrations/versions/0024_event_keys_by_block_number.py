"""event table keys by block number

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07

The primary keys of ``chain_events`` and ``token_transfers`` were (chain_id, block_hash, log_index): a block hash is
random, so each block's rows went into a random leaf of the key's B-tree, every insert descending from the root and
comparing 66-character hashes on the way. Keyed (chain_id, block_number, log_index, block_hash) instead, an indexer
inserts in key order: the rows of a batch land at the right edge of the tree (Postgres' rightmost-leaf fast path, no
descent) and compare on integers first. A log's identity is unchanged: two blocks of different hashes at the same
height (a reorg) still give two rows, as before. COPYing the Ponder comparison's 200,000 transfers into a table with
the old key cost its backend 1.47-1.59 s of CPU, with the new 0.94-1.05 s, without any key 0.59-0.65 s (same rows,
load 7).

The new keys start with (chain_id, block_number), so ``ix_chain_events_chain_block`` (chain_id, block_number,
log_index) and ``ix_token_transfers_chain_block`` (chain_id, block_number) duplicate them: dropped (a reorg's
rollback deletes by chain and block number through the key now).
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("chain_events", "token_transfers"):
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, "
            f"ADD CONSTRAINT pk_{table} PRIMARY KEY (chain_id, block_number, log_index, block_hash)"
        )
    op.execute("DROP INDEX IF EXISTS ix_chain_events_chain_block")
    op.execute("DROP INDEX IF EXISTS ix_token_transfers_chain_block")


def downgrade() -> None:
    for table in ("chain_events", "token_transfers"):
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, "
            f"ADD CONSTRAINT pk_{table} PRIMARY KEY (chain_id, block_hash, log_index)"
        )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_chain_events_chain_block ON chain_events (chain_id, block_number, log_index)"
    )
    op.execute("CREATE INDEX IF NOT EXISTS ix_token_transfers_chain_block ON token_transfers (chain_id, block_number)")
