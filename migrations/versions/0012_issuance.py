"""primary issuance: offerings, subscriptions, direct issuance and redemption

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

models/issuance.py: an offering's subscriptions reserve cash until their batched mint is confirmed; direct
issuance lines each name their operation's business_ref. `kyc_cases.accredited` gates accredited-only offerings.
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('offerings',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('token_id', sa.UUID(), nullable=False),
    sa.Column('asset_id', sa.UUID(), nullable=False),
    sa.Column('issuer_id', sa.UUID(), nullable=False),
    sa.Column('chain_id', sa.Integer(), nullable=False),
    sa.Column('token_address', sa.String(length=42, collation='C'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('quote_currency', sa.String(length=16), nullable=False),
    sa.Column('price', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('lot_size', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('min_ticket', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('max_ticket', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('target', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('hard_cap', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('opens_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closes_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('eligible_countries', postgresql.ARRAY(sa.String(length=2)), nullable=True),
    sa.Column('accredited_only', sa.Boolean(), nullable=False),
    sa.Column('allocation_rule', sa.Enum('FIRST_COME', 'PRO_RATA', name='allocation_rule'), nullable=False),
    sa.Column('fee_bps', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('DRAFT', 'OPEN', 'CLOSED', 'ALLOCATED', 'SETTLED', 'CANCELED', name='offering_state'), nullable=False),
    sa.Column('subscribed_total', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('allocated_total', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('subscription_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['asset_id'], ['assets.id'], name=op.f('fk_offerings_asset_id_assets')),
    sa.ForeignKeyConstraint(['issuer_id'], ['users.id'], name=op.f('fk_offerings_issuer_id_users')),
    sa.ForeignKeyConstraint(['token_id'], ['tokens.id'], name=op.f('fk_offerings_token_id_tokens')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offerings')),
    sa.UniqueConstraint('seq', name=op.f('uq_offerings_seq'))
    )
    op.create_index(op.f('ix_offerings_asset_id'), 'offerings', ['asset_id'], unique=False)
    op.create_index(op.f('ix_offerings_issuer_id'), 'offerings', ['issuer_id'], unique=False)
    op.create_index('ix_offerings_state_closes', 'offerings', ['state', 'closes_at'], unique=False)
    op.create_index(op.f('ix_offerings_token_id'), 'offerings', ['token_id'], unique=False)
    op.create_table('token_issuances',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('kind', sa.Enum('ISSUE', 'REDEEM', name='issuance_kind'), nullable=False),
    sa.Column('token_id', sa.UUID(), nullable=False),
    sa.Column('chain_id', sa.Integer(), nullable=False),
    sa.Column('token_address', sa.String(length=42, collation='C'), nullable=False),
    sa.Column('state', sa.Enum('PENDING_APPROVAL', 'SUBMITTED', 'SETTLED', 'FAILED', 'REJECTED', name='issuance_state'), nullable=False),
    sa.Column('total_quantity', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('requested_by', sa.UUID(), nullable=False),
    sa.Column('decided_by', sa.UUID(), nullable=True),
    sa.Column('client_key', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['decided_by'], ['users.id'], name=op.f('fk_token_issuances_decided_by_users')),
    sa.ForeignKeyConstraint(['requested_by'], ['users.id'], name=op.f('fk_token_issuances_requested_by_users')),
    sa.ForeignKeyConstraint(['token_id'], ['tokens.id'], name=op.f('fk_token_issuances_token_id_tokens')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_token_issuances')),
    sa.UniqueConstraint('seq', name=op.f('uq_token_issuances_seq'))
    )
    op.create_index(op.f('ix_token_issuances_token_id'), 'token_issuances', ['token_id'], unique=False)
    op.create_index('uq_token_issuances_client_key', 'token_issuances', ['requested_by', 'client_key'], unique=True, postgresql_where=sa.text('client_key IS NOT NULL'))
    op.create_table('offering_subscriptions',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('offering_id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('client_key', sa.String(length=64), nullable=True),
    sa.Column('amount', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('wallet_address', sa.String(length=42, collation='C'), nullable=True),
    sa.Column('state', sa.Enum('ACTIVE', 'REJECTED', 'CANCELED', 'UNALLOCATED', 'ALLOCATED', 'SETTLED', 'FAILED', name='subscription_state'), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=True),
    sa.Column('allocated_quantity', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('allocated_units', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('allocated_cash', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('mint_ref', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['offering_id'], ['offerings.id'], name=op.f('fk_offering_subscriptions_offering_id_offerings')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_offering_subscriptions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offering_subscriptions')),
    sa.UniqueConstraint('seq', name=op.f('uq_offering_subscriptions_seq'))
    )
    op.create_index('ix_offering_subscriptions_mint_ref', 'offering_subscriptions', ['mint_ref'], unique=False, postgresql_where=sa.text('mint_ref IS NOT NULL'))
    op.create_index('ix_offering_subscriptions_offering', 'offering_subscriptions', ['offering_id', 'state', 'seq'], unique=False)
    op.create_index(op.f('ix_offering_subscriptions_user_id'), 'offering_subscriptions', ['user_id'], unique=False)
    op.create_index('uq_offering_subscriptions_client_key', 'offering_subscriptions', ['offering_id', 'user_id', 'client_key'], unique=True, postgresql_where=sa.text('client_key IS NOT NULL'))
    op.create_table('token_issuance_lines',
    sa.Column('issuance_id', sa.UUID(), nullable=False),
    sa.Column('line', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('wallet_address', sa.String(length=42, collation='C'), nullable=False),
    sa.Column('quantity', sa.Numeric(precision=38, scale=18), nullable=False),
    sa.Column('units', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('op_ref', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['issuance_id'], ['token_issuances.id'], name=op.f('fk_token_issuance_lines_issuance_id_token_issuances')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_token_issuance_lines_user_id_users')),
    sa.PrimaryKeyConstraint('issuance_id', 'line', name=op.f('pk_token_issuance_lines'))
    )
    op.create_index(op.f('ix_token_issuance_lines_op_ref'), 'token_issuance_lines', ['op_ref'], unique=False)
    op.create_index(op.f('ix_token_issuance_lines_user_id'), 'token_issuance_lines', ['user_id'], unique=False)
    op.add_column('kyc_cases', sa.Column('accredited', sa.Boolean(), server_default=sa.text('false'), nullable=False))


def downgrade() -> None:
    op.drop_column('kyc_cases', 'accredited')
    op.drop_index(op.f('ix_token_issuance_lines_user_id'), table_name='token_issuance_lines')
    op.drop_index(op.f('ix_token_issuance_lines_op_ref'), table_name='token_issuance_lines')
    op.drop_table('token_issuance_lines')
    op.drop_index('uq_offering_subscriptions_client_key', table_name='offering_subscriptions', postgresql_where=sa.text('client_key IS NOT NULL'))
    op.drop_index(op.f('ix_offering_subscriptions_user_id'), table_name='offering_subscriptions')
    op.drop_index('ix_offering_subscriptions_offering', table_name='offering_subscriptions')
    op.drop_index('ix_offering_subscriptions_mint_ref', table_name='offering_subscriptions', postgresql_where=sa.text('mint_ref IS NOT NULL'))
    op.drop_table('offering_subscriptions')
    op.drop_index('uq_token_issuances_client_key', table_name='token_issuances', postgresql_where=sa.text('client_key IS NOT NULL'))
    op.drop_index(op.f('ix_token_issuances_token_id'), table_name='token_issuances')
    op.drop_table('token_issuances')
    op.drop_index(op.f('ix_offerings_token_id'), table_name='offerings')
    op.drop_index('ix_offerings_state_closes', table_name='offerings')
    op.drop_index(op.f('ix_offerings_issuer_id'), table_name='offerings')
    op.drop_index(op.f('ix_offerings_asset_id'), table_name='offerings')
    op.drop_table('offerings')
    for name in ('subscription_state', 'issuance_state', 'issuance_kind', 'offering_state', 'allocation_rule'):
        op.execute(f'DROP TYPE IF EXISTS {name}')
