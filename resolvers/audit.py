"""Audit trail: every successful state-changing mutation appends one row in the same transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models.identity import AuditLog


def record(
    session: AsyncSession,
    *,
    actor_id: uuid.UUID | None,
    action: str,
    target_type: str | None = None,
    target_id: object | None = None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add the row to the caller's transaction; it commits (or rolls back) with the change it describes."""
    session.add(
        AuditLog(
            actor_id=actor_id,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            request_id=request_id,
            details=details or {},
        )
    )
