"""payment refund idempotency key

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07

``refundPayment`` had no idempotency key: an ADMIN client retrying after a timeout refunded twice (an OVERPAID
payment's excess refunded again out of the user's credited cash; a stablecoin refund paid on chain again). It takes an
optional ``idempotencyKey`` now, stored on ``payment_refunds`` with the amount as it was asked for
(``requested_amount``, null: "all that is left"). ``uq_payment_refunds_payment_idempotency_key`` (payment_id,
idempotency_key) makes one refund per key and payment (rows without a key: NULLs are distinct, no limit).

Both columns are nullable without a default (a catalog change, no rewrite). Plain CREATE UNIQUE INDEX, not
CONCURRENTLY (see 0026: every pending migration runs in one transaction under MIGRATION_LOCK_TIMEOUT_S); it holds a
SHARE lock on payment_refunds, a small table (one row per refund), for one pass over it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("payment_refunds", sa.Column("idempotency_key", sa.String(length=120), nullable=True))
    op.add_column("payment_refunds", sa.Column("requested_amount", sa.Numeric(38, 18), nullable=True))
    op.execute(
        "CREATE UNIQUE INDEX uq_payment_refunds_payment_idempotency_key ON payment_refunds (payment_id, idempotency_key)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX uq_payment_refunds_payment_idempotency_key")
    op.drop_column("payment_refunds", "requested_amount")
    op.drop_column("payment_refunds", "idempotency_key")
