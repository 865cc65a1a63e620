"""Reading the audit trail (ADMIN/COMPLIANCE): newest first, keyset-paginated on (at, id)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput
from models.identity import AuditLog
from resolvers.pagination import Page, keyset_page


async def entries(
    session: AsyncSession,
    *,
    actor_id: uuid.UUID | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Page[AuditLog]:
    """`since` is inclusive and `until` exclusive; `action` matches exactly, or by prefix when it ends in '.*'."""
    stmt = select(AuditLog)
    if actor_id is not None:
        stmt = stmt.where(AuditLog.actor_id == actor_id)
    if action:
        if len(action) > 64:
            raise BadUserInput("action filter is too long", field="action")
        if action.endswith(".*"):
            prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(AuditLog.action.like(prefix + "%", escape="\\"))
        else:
            stmt = stmt.where(AuditLog.action == action)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise BadUserInput(f"{name} needs a timezone offset", field=name)
    if since is not None:
        stmt = stmt.where(AuditLog.at >= since)
    if until is not None:
        stmt = stmt.where(AuditLog.at < until)
    return await keyset_page(
        session, stmt, [AuditLog.at, AuditLog.id], descending=True, first=first, after=after, last=last, before=before
    )
