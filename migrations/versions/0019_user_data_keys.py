"""user data keys and erasure requests

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

Personal data moves to per-user data keys (core/data_keys.py, models.privacy): every user with a KYC case gets a
data key wrapped by the master key (KYC_ENCRYPTION_KEY), and their case's personal fields are re-encrypted under
it, so that destroying that one key erases them (crypto-shredding). Downgrade re-encrypts under the master key
(cases whose key was destroyed stay erased: their personal fields become NULL). Erasure requests (decided by
COMPLIANCE) get their table.

The master key is read (as the running processes read it) only when there are rows to re-encrypt.
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def _master():  # type: ignore[no-untyped-def]
    from core.settings import get_settings
    from core.services import build_cipher

    return build_cipher(get_settings())


def upgrade() -> None:
    op.execute("""
        CREATE TABLE user_data_keys (
            user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            wrapped_key bytea,
            created_at timestamptz NOT NULL DEFAULT now(),
            destroyed_at timestamptz
        )""")
    op.execute("CREATE TYPE erasure_status AS ENUM ('PENDING', 'COMPLETED', 'REJECTED')")
    op.execute("""
        CREATE TABLE erasure_requests (
            id uuid PRIMARY KEY,
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            status erasure_status NOT NULL,
            reason text,
            requested_at timestamptz NOT NULL DEFAULT now(),
            processed_by uuid,
            processed_at timestamptz,
            decision_reason text,
            key_destroy_after timestamptz
        )""")
    op.execute("CREATE INDEX ix_erasure_requests_user_id ON erasure_requests (user_id)")
    op.execute("CREATE UNIQUE INDEX uq_erasure_requests_pending_user ON erasure_requests (user_id) "
               "WHERE status = 'PENDING'")
    op.execute("CREATE INDEX ix_erasure_requests_status_requested ON erasure_requests (status, requested_at)")

    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, user_id, personal_data FROM kyc_cases "
                                "WHERE personal_data IS NOT NULL FOR UPDATE")).all()
    if not rows:
        return
    from core.data_keys import new_data_key, wrap
    from core.encryption import FieldCipher

    master = _master()
    for case_id, user_id, blob in rows:
        dek = new_data_key()
        plain = master.decrypt(bytes(blob), case_id.bytes)
        bind.execute(sa.text("INSERT INTO user_data_keys (user_id, wrapped_key) VALUES (:u, :w)"),
                     {"u": user_id, "w": wrap(master, user_id, dek)})
        bind.execute(sa.text("UPDATE kyc_cases SET personal_data = :b WHERE id = :id"),
                     {"b": FieldCipher(dek).encrypt(plain, case_id.bytes), "id": case_id})


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT k.id, k.user_id, k.personal_data, d.wrapped_key FROM kyc_cases k "
        "LEFT JOIN user_data_keys d ON d.user_id = k.user_id WHERE k.personal_data IS NOT NULL FOR UPDATE OF k")).all()
    if rows:
        from core.data_keys import unwrap

        master = _master()
        for case_id, user_id, blob, wrapped in rows:
            if wrapped is None:  # erased: nothing to restore
                plain = None
            else:
                dek = unwrap(master, uuid.UUID(str(user_id)), bytes(wrapped))
                plain = master.encrypt(dek.decrypt(bytes(blob), case_id.bytes), case_id.bytes)
            bind.execute(sa.text("UPDATE kyc_cases SET personal_data = :b WHERE id = :id"),
                         {"b": plain, "id": case_id})
    op.execute("DROP TABLE erasure_requests")
    op.execute("DROP TYPE erasure_status")
    op.execute("DROP TABLE user_data_keys")
