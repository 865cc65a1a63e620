"""Privacy rights (resolvers/privacy): per-user data keys and erasure requests.

`user_data_keys.wrapped_key` is the user's data key wrapped by the master key (core.data_keys); it is set to NULL
(and `destroyed_at` written) when the user's personal data is erased: what it encrypted can no longer be read.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, LargeBinary, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at, uuid_pk
from models.identity import pg_enum


class UserDataKey(Base):
    __tablename__ = "user_data_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = created_at()
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ErasureStatus(str, enum.Enum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"


class ErasureRequest(Base):
    """A user's request to erase their personal data, decided by COMPLIANCE. `key_destroy_after` is when the
    retention job destroys the data key of a COMPLETED erasure held for `PRIVACY_KYC_RETENTION_DAYS`."""

    __tablename__ = "erasure_requests"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    status: Mapped[ErasureStatus] = mapped_column(
        pg_enum(ErasureStatus, "erasure_status"), nullable=False, default=ErasureStatus.PENDING
    )
    reason: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = created_at()
    processed_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    key_destroy_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("uq_erasure_requests_pending_user", "user_id", unique=True, postgresql_where=text("status = 'PENDING'")),
        Index("ix_erasure_requests_status_requested", "status", "requested_at"),
    )
