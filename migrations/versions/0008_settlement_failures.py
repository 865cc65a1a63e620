"""settlement failures

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

A failed trade keeps why it failed (`trades.failure_reason`); the platform account RECEIVABLES holds what a seller
still owes when a failed trade's cash is reversed and the seller no longer has it.
"""

from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TYPE ledger_account_kind ADD VALUE IF NOT EXISTS 'RECEIVABLES'")
    op.add_column('trades', sa.Column('failure_reason', sa.String(length=80), nullable=True))


def downgrade() -> None:
    op.drop_column('trades', 'failure_reason')
    # Postgres cannot drop one value of an enum; RECEIVABLES goes with the type in 0004's downgrade
