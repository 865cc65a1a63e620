"""chain operations: the agent's outbox

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

One row per decision that must reach a chain (models/operations.py): business_ref unique, the signed raw tx and its
nonce stored before broadcast, every broadcast hash kept. Hex columns in collation "C" like 0007.
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

STATES = ('PENDING', 'SIGNED', 'BROADCAST', 'MINED', 'CONFIRMED', 'FAILED', 'REPLACED', 'CANCELED')


def _addr() -> sa.String:
    return sa.String(length=42, collation='C')


def _hash() -> sa.String:
    return sa.String(length=66, collation='C')


def upgrade() -> None:
    units = sa.Numeric(precision=78, scale=0)
    op.create_table('chain_operations',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('chain_id', sa.Integer(), nullable=False),
    sa.Column('contract', _addr(), nullable=False),
    sa.Column('abi_name', sa.String(length=40), nullable=False),
    sa.Column('function', sa.String(length=80), nullable=False),
    sa.Column('args', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('value', units, nullable=False),
    sa.Column('signer', sa.String(length=20), nullable=False),
    sa.Column('business_ref', sa.String(length=200), nullable=False),
    sa.Column('state', sa.Enum(*STATES, name='operation_state'), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('sender', _addr(), nullable=True),
    sa.Column('nonce', sa.BigInteger(), nullable=True),
    sa.Column('raw_tx', sa.Text(), nullable=True),
    sa.Column('tx_hash', _hash(), nullable=True),
    sa.Column('tx_hashes', postgresql.ARRAY(_hash()), nullable=False),
    sa.Column('max_fee_per_gas', units, nullable=True),
    sa.Column('max_priority_fee_per_gas', units, nullable=True),
    sa.Column('gas_price', units, nullable=True),
    sa.Column('gas_limit', units, nullable=True),
    sa.Column('mined_block', sa.BigInteger(), nullable=True),
    sa.Column('mined_block_hash', _hash(), nullable=True),
    sa.Column('mined_tx_hash', _hash(), nullable=True),
    sa.Column('mined_status', sa.SmallInteger(), nullable=True),
    sa.Column('gas_used', units, nullable=True),
    sa.Column('confirmed_block', sa.BigInteger(), nullable=True),
    sa.Column('revert_reason', sa.Text(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_by', sa.UUID(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('broadcast_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('mined_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_operations')),
    sa.UniqueConstraint('business_ref', name=op.f('uq_chain_operations_business_ref'))
    )
    op.create_index('ix_chain_operations_state_chain', 'chain_operations', ['state', 'chain_id', 'created_at'])
    op.create_index('ix_chain_operations_kind_created', 'chain_operations', ['kind', 'created_at'])
    op.create_index('uq_chain_operations_sender_nonce', 'chain_operations', ['chain_id', 'sender', 'nonce'],
                    unique=True, postgresql_where=sa.text("nonce IS NOT NULL AND state <> 'CANCELED'"))


def downgrade() -> None:
    op.drop_table('chain_operations')
    sa.Enum(name='operation_state').drop(op.get_bind(), checkfirst=True)
