"""indexer operations: chain health, backfill requests, identity country source

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

- `indexer_cursors` records why a chain stopped (ReorgTooDeep) and the run of step failures it retries
  through, so `rwa index status` and `indexerStatus` show a stopped chain as stopped (issue 13, item 5);
- `indexer_backfill_requests`: `rwa index backfill` beside a running `rwa index run` queues a range the
  chain's writer executes, with progress;
- `identities.country_source`: where the country came from when the node had no state that old (item 4).
"""

from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('indexer_cursors', sa.Column('stopped_reason', sa.Text(), nullable=True))
    op.add_column('indexer_cursors', sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('indexer_cursors', sa.Column('error_count', sa.Integer(), server_default=sa.text('0'),
                                               nullable=False))
    op.add_column('indexer_cursors', sa.Column('last_error', sa.Text(), nullable=True))
    op.add_column('indexer_cursors', sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('identities', sa.Column('country_source', sa.String(length=8), server_default=sa.text("'EVENT'"),
                                          nullable=False))
    op.create_table(
        'indexer_backfill_requests',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('chain_id', sa.Integer(), nullable=False),
        sa.Column('token_address', sa.String(length=42, collation='C'), nullable=True),
        sa.Column('from_block', sa.BigInteger(), nullable=False),
        sa.Column('to_block', sa.BigInteger(), nullable=True),
        sa.Column('state', sa.String(length=12), server_default=sa.text("'PENDING'"), nullable=False),
        sa.Column('cancel_requested', sa.Boolean(), server_default=sa.text('false'), nullable=False),
        sa.Column('blocks_total', sa.BigInteger(), nullable=True),
        sa.Column('blocks_done', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
        sa.Column('events', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_indexer_backfill_requests')),
    )
    op.create_index('ix_indexer_backfill_requests_chain_state', 'indexer_backfill_requests',
                    ['chain_id', 'state', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_indexer_backfill_requests_chain_state', table_name='indexer_backfill_requests')
    op.drop_table('indexer_backfill_requests')
    op.drop_column('identities', 'country_source')
    for col in ('last_error_at', 'last_error', 'error_count', 'stopped_at', 'stopped_reason'):
        op.drop_column('indexer_cursors', col)
