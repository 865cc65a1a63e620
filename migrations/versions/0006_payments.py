"""payments

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Payments, their on-chain matches, state history, refunds with outgoing transfer instructions, webhook
endpoints and deliveries (dead letters), and the sequence that hands out HD derivation indexes.
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence('payment_deposit_index_seq')))
    op.create_table('webhook_endpoints',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints'))
    )
    op.create_table('payments',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('method', sa.Enum('STABLECOIN', 'BANK_TRANSFER', name='payment_method'), nullable=False),
    sa.Column('state', sa.Enum('AWAITING_FUNDS', 'DETECTED', 'UNDERPAID', 'CONFIRMED', 'OVERPAID', 'LATE', 'EXPIRED', 'CANCELED', 'REFUNDED', 'PARTIALLY_REFUNDED', 'FAILED', name='payment_state'), nullable=False),
    sa.Column('amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('currency', sa.String(length=16), nullable=False),
    sa.Column('idempotency_key', sa.String(length=120), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('chain_id', sa.Integer(), nullable=True),
    sa.Column('token_address', sa.String(length=42), nullable=True),
    sa.Column('decimals', sa.SmallInteger(), nullable=True),
    sa.Column('deposit_address', sa.String(length=42), nullable=True),
    sa.Column('derivation_index', sa.BigInteger(), nullable=True),
    sa.Column('amount_units', sa.Numeric(precision=78, scale=0), nullable=True),
    sa.Column('received_units', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('final_units', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('reference_code', sa.String(length=32), nullable=True),
    sa.Column('bank_reference', sa.String(length=120), nullable=True),
    sa.Column('received_amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('credited_amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('refundable_amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('refunded_amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('final_block', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_payments_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments'))
    )
    op.create_index('ix_payments_created', 'payments', ['created_at', 'id'], unique=False)
    op.create_index('ix_payments_open', 'payments', ['chain_id', 'state', 'expires_at'], unique=False, postgresql_where=sa.text("state IN ('AWAITING_FUNDS', 'DETECTED', 'UNDERPAID', 'EXPIRED')"))
    op.create_index('ix_payments_user_created', 'payments', ['user_id', 'created_at', 'id'], unique=False)
    op.create_index('uq_payments_deposit_address', 'payments', ['chain_id', 'deposit_address'], unique=True)
    op.create_index('uq_payments_derivation_index', 'payments', ['derivation_index'], unique=True)
    op.create_index('uq_payments_reference_code', 'payments', ['reference_code'], unique=True)
    op.create_index('uq_payments_user_idempotency_key', 'payments', ['user_id', 'idempotency_key'], unique=True)
    op.create_table('webhook_deliveries',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('endpoint_id', sa.UUID(), nullable=True),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_webhook_deliveries_endpoint_id_webhook_endpoints')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries'))
    )
    op.create_index('ix_webhook_deliveries_state_created', 'webhook_deliveries', ['state', 'created_at', 'id'], unique=False)
    op.create_table('payment_matches',
    sa.Column('chain_id', sa.Integer(), nullable=False),
    sa.Column('block_hash', sa.String(length=66), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.UUID(), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('from_address', sa.String(length=42), nullable=False),
    sa.Column('value', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_payment_matches_payment_id_payments')),
    sa.PrimaryKeyConstraint('chain_id', 'block_hash', 'log_index', name=op.f('pk_payment_matches'))
    )
    op.create_index(op.f('ix_payment_matches_payment_id'), 'payment_matches', ['payment_id'], unique=False)
    op.create_table('payment_refunds',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('payment_id', sa.UUID(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_payment_refunds_actor_id_users')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_payment_refunds_payment_id_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_refunds'))
    )
    op.create_index(op.f('ix_payment_refunds_payment_id'), 'payment_refunds', ['payment_id'], unique=False)
    op.create_table('payment_transitions',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('payment_id', sa.UUID(), nullable=False),
    sa.Column('from_state', sa.String(length=24), nullable=False),
    sa.Column('to_state', sa.String(length=24), nullable=False),
    sa.Column('actor_id', sa.UUID(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_payment_transitions_payment_id_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_transitions'))
    )
    op.create_index('ix_payment_transitions_payment', 'payment_transitions', ['payment_id', 'id'], unique=False)
    op.create_table('outgoing_transfers',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('refund_id', sa.UUID(), nullable=False),
    sa.Column('chain_id', sa.Integer(), nullable=False),
    sa.Column('token_address', sa.String(length=42), nullable=False),
    sa.Column('to_address', sa.String(length=42), nullable=False),
    sa.Column('amount_units', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['refund_id'], ['payment_refunds.id'], name=op.f('fk_outgoing_transfers_refund_id_payment_refunds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outgoing_transfers')),
    sa.UniqueConstraint('refund_id', name=op.f('uq_outgoing_transfers_refund_id'))
    )


def downgrade() -> None:

    op.drop_table('outgoing_transfers')
    op.drop_index('ix_payment_transitions_payment', table_name='payment_transitions')
    op.drop_table('payment_transitions')
    op.drop_index(op.f('ix_payment_refunds_payment_id'), table_name='payment_refunds')
    op.drop_table('payment_refunds')
    op.drop_index(op.f('ix_payment_matches_payment_id'), table_name='payment_matches')
    op.drop_table('payment_matches')
    op.drop_index('ix_webhook_deliveries_state_created', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_index('uq_payments_user_idempotency_key', table_name='payments')
    op.drop_index('uq_payments_reference_code', table_name='payments')
    op.drop_index('uq_payments_derivation_index', table_name='payments')
    op.drop_index('uq_payments_deposit_address', table_name='payments')
    op.drop_index('ix_payments_user_created', table_name='payments')
    op.drop_index('ix_payments_open', table_name='payments', postgresql_where=sa.text("state IN ('AWAITING_FUNDS', 'DETECTED', 'UNDERPAID', 'EXPIRED')"))
    op.drop_index('ix_payments_created', table_name='payments')
    op.drop_table('payments')
    op.drop_table('webhook_endpoints')
    op.execute(sa.schema.DropSequence(sa.Sequence('payment_deposit_index_seq')))
    sa.Enum(name='payment_state').drop(op.get_bind(), checkfirst=True)
    sa.Enum(name='payment_method').drop(op.get_bind(), checkfirst=True)
