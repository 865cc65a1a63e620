"""Privacy rights: the caller's data export, erasure requests and COMPLIANCE's decisions. Types and fields only; the
work is in resolvers/privacy."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypeAlias

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from models.identity import Role
from models.privacy import ErasureRequest as ErasureRequestModel
from models.privacy import ErasureStatus as ErasureStatusModel
from resolvers.privacy import erasure, export
from schema.mutations import mutation
from schema.node import Node, register_node
from schema.pagination import Connection
from schema.permissions import authenticated, requires

strawberry.enum(ErasureStatusModel, description="PENDING until COMPLIANCE decides.")
ErasureStatus: TypeAlias = ErasureStatusModel
strawberry.enum(
    erasure.ErasureDecision, description="ERASE the account's personal data, or REJECT (a reason is required)."
)
ErasureDecision: TypeAlias = erasure.ErasureDecision


@strawberry.type(description="A request to erase the requester's personal data (GDPR art. 17).")
class ErasureRequest(Node):
    user_id: uuid.UUID
    status: ErasureStatus
    reason: str | None
    requested_at: datetime
    processed_at: datetime | None
    decision_reason: str | None
    key_destroy_after: datetime | None = strawberry.field(
        description=("Under a legal hold (PRIVACY_KYC_RETENTION_DAYS): when the personal data key is destroyed.")
    )

    @classmethod
    def from_model(cls, r: ErasureRequestModel) -> ErasureRequest:
        return cls(
            id=r.id,
            user_id=r.user_id,
            status=r.status,
            reason=r.reason,
            requested_at=r.requested_at,
            processed_at=r.processed_at,
            decision_reason=r.decision_reason,
            key_destroy_after=r.key_destroy_after,
        )


@strawberry.type
class Query:
    @strawberry.field(extensions=authenticated(), description="The caller's own erasure requests, newest first.")
    async def my_erasure_requests(self, info: Info) -> list[ErasureRequest]:
        rows = await erasure.my_requests(await info.context.session(), info.context.viewer.require_user())
        return [ErasureRequest.from_model(r) for r in rows]

    @strawberry.field(extensions=requires(Role.COMPLIANCE), description="Erasure requests, oldest first.")
    async def erasure_requests(
        self, info: Info, status: ErasureStatus | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[ErasureRequest]:
        page = await erasure.list_requests(await info.context.session(), status, first, after)
        return Connection.from_page(page, ErasureRequest.from_model)


@strawberry.type
class Mutation:
    @mutation(
        extensions=authenticated(),
        description=(
            "Everything the platform holds about you, as one JSON document: profile, KYC (personal fields decrypted), "
            "wallets, sessions, API keys, ledger accounts and entries, orders, trades (your side only), payments, "
            "withdrawals, subscriptions, holdings, erasure requests and the audit rows about you. Your own sign-in "
            "only (not API keys or OAuth clients); the export itself is audited."
        ),
    )
    async def export_my_data(self, info: Info) -> JSON:
        return JSON(await export.export_my_data(info.context))

    @mutation(
        extensions=authenticated(),
        description=(
            "Ask for your personal data to be erased. COMPLIANCE processes it; afterwards you cannot sign in."
        ),
    )
    async def request_erasure(self, info: Info, reason: str | None = None) -> ErasureRequest:
        return ErasureRequest.from_model(await erasure.request(info.context, reason))

    @mutation(
        extensions=requires(Role.COMPLIANCE),
        description=(
            "ERASE: personal data made unreadable (its data key destroyed), email pseudonymized, sign-in impossible; "
            "ledger, trades and audit log keep the pseudonymous id. Refused (ERASURE_BLOCKED) while orders or "
            "withdrawals are open."
        ),
    )
    async def process_erasure(
        self, info: Info, id: uuid.UUID, decision: ErasureDecision = ErasureDecision.ERASE, reason: str | None = None
    ) -> ErasureRequest:
        return ErasureRequest.from_model(await erasure.process(info.context, id, decision, reason))


async def load_erasure_request(info: Info, id: uuid.UUID) -> ErasureRequest | None:
    """`node(id)` for an ErasureRequest: its requester (like `myErasureRequests`) and COMPLIANCE (like
    `erasureRequests`)."""
    viewer = info.context.viewer
    if viewer.user_id is None:
        return None
    row = await (await info.context.session()).get(ErasureRequestModel, id)
    if row is None or (row.user_id != viewer.user_id and not viewer.has_role(Role.COMPLIANCE.value)):
        return None
    return ErasureRequest.from_model(row)


register_node("ErasureRequest", "erasure_requests", load_erasure_request)
