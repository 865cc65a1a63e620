"""agent domain: withdrawals, a pending-payout ledger account, business_ref prefix lookups

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

- `withdrawals`: an investor's cash out in stablecoin to one of its verified wallets (resolvers/payments/
  withdrawals.py), its cash held in the platform account WITHDRAWALS_PENDING until the transfer is final;
- `chain_operations.business_ref` prefix index (varchar_pattern_ops): identity operations are looked up by their
  versioned key prefix "identity:<chain>:<registry>:<wallet>:" (resolvers/identity/registry_sync.py).
"""

from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

STATES = ('PENDING_APPROVAL', 'APPROVED', 'COMPLETED', 'FAILED', 'REJECTED')


def upgrade() -> None:
    op.execute("ALTER TYPE ledger_account_kind ADD VALUE IF NOT EXISTS 'WITHDRAWALS_PENDING'")
    op.execute("CREATE INDEX ix_chain_operations_business_ref_prefix ON chain_operations "
               "(business_ref varchar_pattern_ops)")
    money = sa.Numeric(precision=38, scale=18)
    op.create_table(
        'withdrawals',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('user_id', sa.UUID(), sa.ForeignKey('users.id', name='fk_withdrawals_user_id_users'),
                  nullable=False),
        sa.Column('currency', sa.String(length=16), nullable=False),
        sa.Column('amount', money, nullable=False),
        sa.Column('chain_id', sa.Integer(), nullable=False),
        sa.Column('token_address', sa.String(length=42, collation='C'), nullable=False),
        sa.Column('to_address', sa.String(length=42, collation='C'), nullable=False),
        sa.Column('amount_units', sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column('state', sa.Enum(*STATES, name='withdrawal_state'), nullable=False),
        sa.Column('idempotency_key', sa.String(length=120), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('decided_by', sa.UUID(), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('tx_hash', sa.String(length=66, collation='C'), nullable=True),
        sa.Column('block_number', sa.BigInteger(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_withdrawals')),
    )
    op.create_index('uq_withdrawals_user_idempotency_key', 'withdrawals', ['user_id', 'idempotency_key'],
                    unique=True)
    op.create_index('ix_withdrawals_user_created', 'withdrawals', ['user_id', 'created_at', 'id'])
    op.create_index('ix_withdrawals_state_created', 'withdrawals', ['state', 'created_at', 'id'])


def downgrade() -> None:
    op.drop_table('withdrawals')
    sa.Enum(name='withdrawal_state').drop(op.get_bind(), checkfirst=True)
    op.drop_index('ix_chain_operations_business_ref_prefix', table_name='chain_operations')
    # Postgres cannot drop one value of an enum; WITHDRAWALS_PENDING goes with the type in 0004's downgrade
