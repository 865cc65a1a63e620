"""user mfa

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

TOTP second factor per user (models.identity.UserMfa): encrypted secret, last accepted time-step (replay
protection), hashed recovery codes, and its own failure counter and lock.
"""

from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE user_mfa (
            user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            secret_enc bytea NOT NULL,
            confirmed_at timestamptz,
            last_used_step bigint,
            recovery_code_hashes varchar(64)[] NOT NULL DEFAULT '{}',
            failed_attempts integer NOT NULL DEFAULT 0,
            locked_until timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )""")


def downgrade() -> None:
    op.execute("DROP TABLE user_mfa")
