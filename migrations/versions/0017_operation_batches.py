"""operation batches

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

The agent folds PENDING settlement transfers into one batch operation (batchSettlementTransfer: one transaction for
many trades, agent/batches.py): members point at it (`batch_id`) and wait in the new state BATCHED until it
completes. An enum value cannot be dropped: the downgrade leaves BATCHED in operation_state (0009's downgrade drops
the type).
"""

from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TYPE operation_state ADD VALUE IF NOT EXISTS 'BATCHED'")
    op.execute("ALTER TABLE chain_operations ADD COLUMN batch_id uuid "
               "CONSTRAINT fk_chain_operations_batch_id_chain_operations REFERENCES chain_operations (id)")
    op.execute("CREATE INDEX ix_chain_operations_batch_id ON chain_operations (batch_id) WHERE batch_id IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX ix_chain_operations_batch_id")
    op.execute("ALTER TABLE chain_operations DROP COLUMN batch_id")
