"""OAuth 2.0 clients of partners (client-credentials grant, RFC 6749 §4.4): resolvers/identity/oauth_clients.py.

A client acts for one account (`owner_id`: its roles still apply) within the scopes ADMIN granted it. Its secrets
are stored as HMAC-SHA256 digests under a server-side pepper; a rotation keeps the old secret valid until
`expires_at` (the overlap), and the secret's id is the `sid` of every token issued with it, so revoking it ends
those tokens on every process at once (core.revocation)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at, uuid_pk


class OAuthClient(Base):
    __tablename__ = "oauth_clients"

    id: Mapped[uuid.UUID] = uuid_pk()
    client_id: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(32)), nullable=False)
    created_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = created_at()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OAuthClientSecret(Base):
    __tablename__ = "oauth_client_secrets"

    id: Mapped[uuid.UUID] = uuid_pk()
    client_pk: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), nullable=False, index=True
    )
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = created_at()
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # end of a rotation's overlap
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
