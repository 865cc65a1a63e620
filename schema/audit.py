"""The audit trail, for ADMIN and COMPLIANCE. Types and fields only; the work is in resolvers/identity/audit_log."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from models.identity import AuditLog as AuditLogModel
from models.identity import Role
from resolvers.identity import audit_log
from schema.pagination import Connection
from schema.permissions import requires


@strawberry.type(description="One successful state change: who, what, on which target, in which request, when.")
class AuditEntry:
    id: strawberry.ID
    at: datetime
    actor_id: uuid.UUID | None = strawberry.field(description="Null for system and CLI actions.")
    action: str
    target_type: str | None
    target_id: str | None
    request_id: str | None
    details: JSON

    @classmethod
    def from_model(cls, row: AuditLogModel) -> AuditEntry:
        return cls(
            id=strawberry.ID(str(row.id)),
            at=row.at,
            actor_id=row.actor_id,
            action=row.action,
            target_type=row.target_type,
            target_id=row.target_id,
            request_id=row.request_id,
            details=JSON(row.details),
        )


@strawberry.type
class Query:
    @strawberry.field(
        extensions=requires(Role.ADMIN, Role.COMPLIANCE),
        description=(
            "Newest first. `action` matches exactly, or by prefix when it ends in '.*' (e.g. \"kyc.*\"); "
            "`since` is inclusive, `until` exclusive."
        ),
    )
    async def audit_log(
        self,
        info: Info,
        actor_id: uuid.UUID | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[AuditEntry]:
        page = await audit_log.entries(
            await info.context.session(),
            actor_id=actor_id,
            action=action,
            since=since,
            until=until,
            first=first,
            after=after,
            last=last,
            before=before,
        )
        return Connection.from_page(page, AuditEntry.from_model)
