"""user revocations

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

A user disabled, deleted or stripped of a role ends their access tokens at once (core/user_changes.py): a trigger
on `users` records the change in `user_revocations` and notifies `rwa_user_revoked` with "<user id> <epoch>",
whoever made the change (the API, the CLI, SQL). Rows live as long as an access token can (the API prunes them).
"""

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE user_revocations (
            id bigserial PRIMARY KEY,
            user_id uuid NOT NULL,
            revoked_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            reason varchar(16) NOT NULL
        )""")
    op.execute("CREATE INDEX ix_user_revocations_revoked_at ON user_revocations (revoked_at)")
    op.execute("""
        CREATE FUNCTION rwa_user_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            uid uuid;
            why varchar(16);
        BEGIN
            IF TG_OP = 'DELETE' THEN
                uid := OLD.id; why := 'DELETED';
            ELSIF NEW.status::text <> 'ACTIVE' AND OLD.status IS DISTINCT FROM NEW.status THEN
                uid := NEW.id; why := 'DISABLED';
            ELSIF NOT (OLD.roles <@ NEW.roles) THEN
                uid := NEW.id; why := 'ROLE_REVOKED';
            ELSE
                RETURN NULL;
            END IF;
            INSERT INTO user_revocations (user_id, reason) VALUES (uid, why);
            PERFORM pg_notify('rwa_user_revoked', uid::text || ' ' || extract(epoch FROM clock_timestamp())::text);
            RETURN NULL;
        END $$""")
    op.execute("""
        CREATE TRIGGER users_revoke_tokens AFTER UPDATE OF status, roles OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION rwa_user_revoked()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS users_revoke_tokens ON users")
    op.execute("DROP FUNCTION IF EXISTS rwa_user_revoked()")
    op.execute("DROP TABLE IF EXISTS user_revocations")
