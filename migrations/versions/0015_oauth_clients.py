"""oauth clients

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

OAuth 2.0 clients (client-credentials grant) and their secrets (models.oauth): HMAC-SHA256 digests, an overlap end
after a rotation, revocation.
"""

from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE oauth_clients (
            id uuid NOT NULL,
            client_id varchar(40) NOT NULL,
            name varchar(100) NOT NULL,
            owner_id uuid NOT NULL,
            scopes varchar(32)[] NOT NULL,
            created_by uuid,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz,
            revoked_at timestamptz,
            CONSTRAINT pk_oauth_clients PRIMARY KEY (id),
            CONSTRAINT uq_oauth_clients_client_id UNIQUE (client_id),
            CONSTRAINT fk_oauth_clients_owner_id_users FOREIGN KEY (owner_id) REFERENCES users (id) ON DELETE CASCADE
        )""")
    op.execute("CREATE INDEX ix_oauth_clients_owner_id ON oauth_clients (owner_id)")
    op.execute("""
        CREATE TABLE oauth_client_secrets (
            id uuid NOT NULL,
            client_pk uuid NOT NULL,
            secret_hash varchar(64) NOT NULL,
            prefix varchar(16) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            revoked_at timestamptz,
            CONSTRAINT pk_oauth_client_secrets PRIMARY KEY (id),
            CONSTRAINT fk_oauth_client_secrets_client_pk_oauth_clients FOREIGN KEY (client_pk)
                REFERENCES oauth_clients (id) ON DELETE CASCADE
        )""")
    op.execute("CREATE INDEX ix_oauth_client_secrets_client_pk ON oauth_client_secrets (client_pk)")


def downgrade() -> None:
    op.execute("DROP TABLE oauth_client_secrets")
    op.execute("DROP TABLE oauth_clients")
