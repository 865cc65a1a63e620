"""KYC: submission, review and the compliance queue. Types and fields only; the work is in resolvers/identity/kyc."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import TypeAlias

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from models.identity import KycCase as KycCaseModel
from models.identity import KycStatus as KycStatusModel
from models.identity import Role
from resolvers.identity import kyc
from resolvers.trading import market_data, sequencer
from schema.mutations import after_commit, mutation
from schema.node import Node, register_node
from schema.pagination import Connection
from schema.permissions import authenticated, requires

strawberry.enum(
    KycStatusModel,
    description=(
        "NOT_STARTED -> PENDING_REVIEW -> APPROVED | REJECTED; REJECTED or EXPIRED may resubmit; "
        "APPROVED -> SUSPENDED | EXPIRED (an approval lapses by itself at expiresAt)."
    ),
)
KycStatus: TypeAlias = KycStatusModel
strawberry.enum(kyc.DocumentType)
DocumentType: TypeAlias = kyc.DocumentType
strawberry.enum(kyc.KycDecision)
KycDecision: TypeAlias = kyc.KycDecision


@strawberry.type(description="Decrypted personal details: for the case owner and for COMPLIANCE only.")
class KycDetails:
    full_name: str
    date_of_birth: date
    country: str = strawberry.field(description="ISO 3166-1 alpha-2")
    document_type: DocumentType
    document_number: str
    address: str

    @classmethod
    def from_details(cls, d: kyc.KycDetails) -> KycDetails:
        return cls(
            full_name=d.full_name,
            date_of_birth=d.date_of_birth,
            country=d.country,
            document_type=d.document_type,
            document_number=d.document_number,
            address=d.address,
        )


@strawberry.type(
    description=(
        "A user's KYC case, from its first submission on. Status and dates are visible to its owner and to staff "
        "(COMPLIANCE, ADMIN); details are not."
    )
)
class KycCase(Node):
    user_id: uuid.UUID
    status: KycStatus
    submitted_at: datetime | None
    reviewed_at: datetime | None
    reviewed_by: uuid.UUID | None
    decision_reason: str | None = strawberry.field(description="Why it was rejected, suspended or expired.")
    expires_at: datetime | None = strawberry.field(description="When an approval lapses.")
    row: strawberry.Private[KycCaseModel]

    @strawberry.field(
        description=(
            "The submitted personal details, decrypted. The owner sees their own; COMPLIANCE sees any to review it; "
            "anyone else (ADMIN included) and every API key gets FORBIDDEN."
        )
    )
    async def details(self, info: Info) -> KycDetails | None:
        found = await kyc.details_for(info.context, self.row)
        return KycDetails.from_details(found) if found else None

    @classmethod
    def from_model(cls, case: KycCaseModel) -> KycCase:
        return cls(
            id=case.id,
            user_id=case.user_id,
            status=kyc.status_of(case),
            submitted_at=case.submitted_at,
            reviewed_at=case.reviewed_at,
            reviewed_by=case.reviewed_by,
            decision_reason=case.decision_reason,
            expires_at=case.expires_at,
            row=case,
        )


@strawberry.input(description="Personal details for KYC; encrypted at rest and never logged.")
class KycInput:
    full_name: str
    date_of_birth: date
    country: str = strawberry.field(description="ISO 3166-1 alpha-2, e.g. DE")
    document_type: DocumentType
    document_number: str
    address: str

    def to_details(self) -> kyc.KycDetails:
        return kyc.KycDetails(
            full_name=self.full_name,
            date_of_birth=self.date_of_birth,
            country=self.country,
            document_type=self.document_type,
            document_number=self.document_number,
            address=self.address,
        )


@strawberry.type
class Query:
    @strawberry.field(
        extensions=authenticated(),
        description="The caller's own KYC case; null before their first submission (KYC status NOT_STARTED).",
    )
    async def my_kyc(self, info: Info) -> KycCase | None:
        user_id = info.context.viewer.require_user()
        case = await kyc.my_case(await info.context.session(), user_id)
        return KycCase.from_model(case) if case else None

    @strawberry.field(
        extensions=requires(Role.COMPLIANCE, Role.ADMIN),
        description="The review queue, oldest submission first. Details: COMPLIANCE only.",
    )
    async def kyc_cases(
        self, info: Info, status: KycStatus | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[KycCase]:
        page = await kyc.list_cases(await info.context.session(), status, first, after)
        return Connection.from_page(page, KycCase.from_model)


@strawberry.type
class Mutation:
    @mutation(extensions=authenticated(), description="Submit (or resubmit after REJECTED/EXPIRED) for review.")
    async def submit_kyc(self, info: Info, input: KycInput) -> KycCase:
        details = input.to_details()
        return await _with_cancels(info, lambda s: kyc.submit(info.context, details, s))

    @mutation(
        extensions=requires(Role.COMPLIANCE),
        description="Approve or reject a PENDING_REVIEW case; REJECT needs a reason.",
    )
    async def review_kyc(self, info: Info, id: uuid.UUID, decision: KycDecision, reason: str | None = None) -> KycCase:
        return await _with_cancels(info, lambda s: kyc.review(info.context, id, decision, reason, s))

    @mutation(extensions=requires(Role.COMPLIANCE), description="APPROVED -> SUSPENDED.")
    async def suspend_kyc(self, info: Info, id: uuid.UUID, reason: str) -> KycCase:
        return await _with_cancels(info, lambda s: kyc.suspend(info.context, id, reason, s))

    @mutation(extensions=requires(Role.COMPLIANCE), description="APPROVED -> EXPIRED, before its date.")
    async def expire_kyc(self, info: Info, id: uuid.UUID, reason: str | None = None) -> KycCase:
        return await _with_cancels(info, lambda s: kyc.expire(info.context, id, reason, s))


async def _with_cancels(
    info: Info, work: Callable[[AsyncSession], Awaitable[tuple[KycCaseModel, market_data.Events]]]
) -> KycCase:
    """A KYC write that may cancel its user's open orders (resolvers/identity/kyc.py `stop_trading`): run like a
    user cancel (resolvers/trading/sequencer.py `detached`), so the book and order events of what it committed are
    published exactly once after the commit."""
    hub = info.context.services.pubsub
    case, events = await sequencer.detached(await info.context.session(), hub, work, lambda done: done[1])
    after_commit(info, lambda: market_data.publish(hub, events))
    return KycCase.from_model(case)


async def load_kyc_case(info: Info, id: uuid.UUID) -> KycCase | None:
    """`node(id)` for a KycCase: its owner (like `myKyc`) and COMPLIANCE or ADMIN (like `kycCases`)."""
    viewer = info.context.viewer
    if viewer.user_id is None:
        return None
    case = await (await info.context.session()).get(KycCaseModel, id)
    if case is None:
        return None
    if case.user_id != viewer.user_id and not viewer.has_role(Role.COMPLIANCE.value, Role.ADMIN.value):
        return None
    return KycCase.from_model(case)


register_node("KycCase", "kyc_cases", load_kyc_case)
