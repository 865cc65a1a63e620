"""KYC cases: submission with personal data encrypted at rest, review by COMPLIANCE, suspension and expiry.

Who sees the decrypted personal details: the case owner (their own case) and COMPLIANCE (to review it), both
only through an interactive session (JWT), never through a long-lived read-only API key. ADMIN and everyone
else see status and dates only. The details are one AES-256-GCM blob whose associated data is the case id, so a
blob copied onto another case does not decrypt. `country` is also kept in clear: it is the jurisdiction that
transfer eligibility rules filter on. Personal fields are never put in logs or audit rows.
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.encryption import FieldCipher
from core.errors import BadUserInput, Conflict, Forbidden, NotFound, Unauthenticated
from core.transactions import transient_retry
from models.identity import KycCase, KycStatus, Role
from resolvers import unit_of_work
from resolvers.audit import record
from resolvers.context import Context
from resolvers.identity.countries import ISO_3166_ALPHA2
from resolvers.identity.kyc_states import ACTOR, KycEvent, effective_status, next_status
from resolvers.identity.registry_sync import sync_users
from resolvers.pagination import Page, keyset_page
from resolvers.privacy.keys import Erased, cipher_for, decrypt_blob
from resolvers.raw_sql import pg
from resolvers.trading import market_data, sequencer
from resolvers.trading.cancel import cancel_users_orders
from resolvers.trading.market_data import Events
from resolvers.viewer import Viewer


class DocumentType(str, enum.Enum):
    PASSPORT = "PASSPORT"
    NATIONAL_ID = "NATIONAL_ID"
    DRIVING_LICENSE = "DRIVING_LICENSE"
    RESIDENCE_PERMIT = "RESIDENCE_PERMIT"


class KycDecision(str, enum.Enum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


@dataclass(frozen=True)
class KycDetails:
    full_name: str
    date_of_birth: date
    country: str
    document_type: DocumentType
    document_number: str
    address: str


_DOCUMENT_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 \-/]{0,63}$")
MAX_REASON = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


def _text(value: str, field: str, max_len: int) -> str:
    value = " ".join(value.split())
    if not value or len(value) > max_len:
        raise BadUserInput(f"{field} must be 1 to {max_len} characters", field=field)
    return value


def validate(details: KycDetails, today: date) -> KycDetails:
    """Normalize the submission or raise BAD_USER_INPUT naming the field (the value is never echoed)."""
    country = details.country.strip().upper()
    if country not in ISO_3166_ALPHA2:
        raise BadUserInput("country must be an ISO 3166-1 alpha-2 code", field="country")
    if not date(1900, 1, 1) <= details.date_of_birth < today:
        raise BadUserInput("dateOfBirth must be in the past", field="dateOfBirth")
    number = details.document_number.strip()
    if not _DOCUMENT_NUMBER.match(number):
        raise BadUserInput("documentNumber must be 1 to 64 letters, digits, spaces, '-' or '/'", field="documentNumber")
    return KycDetails(
        full_name=_text(details.full_name, "fullName", 200),
        date_of_birth=details.date_of_birth,
        country=country,
        document_type=DocumentType(details.document_type),
        document_number=number,
        address=_text(details.address, "address", 500),
    )


def encrypt_details(cipher: FieldCipher, case_id: uuid.UUID, details: KycDetails) -> bytes:
    payload = asdict(details)
    payload["date_of_birth"] = details.date_of_birth.isoformat()
    payload["document_type"] = details.document_type.value
    return cipher.encrypt_json(payload, associated_data=case_id.bytes)


def decrypt_details(cipher: FieldCipher, case: KycCase, user_cipher: FieldCipher | None = None) -> KycDetails | None:
    """`cipher` is the master key's; `user_cipher` the case owner's data key (resolvers/privacy/keys.py), under which
    details are written since migration 0019 (without it only rows still under the master key read)."""
    if case.personal_data is None:
        return None
    raw = json.loads(decrypt_blob(cipher, user_cipher, case.personal_data, case.id.bytes))
    return KycDetails(
        full_name=raw["full_name"],
        date_of_birth=date.fromisoformat(raw["date_of_birth"]),
        country=raw["country"],
        document_type=DocumentType(raw["document_type"]),
        document_number=raw["document_number"],
        address=raw["address"],
    )


def may_read_details(viewer: Viewer, case: KycCase) -> bool:
    if not viewer.interactive:  # API keys and OAuth clients acting for the account never see them
        return False
    return viewer.user_id == case.user_id or viewer.has_role(Role.COMPLIANCE.value)


async def read_details(session: AsyncSession, master: FieldCipher, case: KycCase) -> KycDetails | None:
    """The case's details under its owner's data key; None when there are none or they were erased."""
    if case.personal_data is None:
        return None
    try:
        user_cipher = await cipher_for(session, master, case.user_id)
    except Erased:
        return None
    return decrypt_details(master, case, user_cipher)


async def details_for(ctx: Context, case: KycCase) -> KycDetails | None:
    if not may_read_details(ctx.viewer, case):
        raise Forbidden("personal details are visible only to their owner and to COMPLIANCE (not via API keys)")
    return await read_details(await ctx.session(), ctx.services.cipher, case)


def status_of(case: KycCase, now: datetime | None = None) -> KycStatus:
    return effective_status(case.status, case.expires_at, now or utcnow())


async def my_case(session: AsyncSession, user_id: uuid.UUID) -> KycCase | None:
    return (await session.execute(select(KycCase).where(KycCase.user_id == user_id))).scalar_one_or_none()


FOREIGN_KEY_VIOLATION = "23503"
# the order reason of open orders canceled because their owner may not trade any more (the gate's refusal code)
KYC_NOT_APPROVED = "KYC_NOT_APPROVED"


async def stop_trading(
    session: AsyncSession,
    user_ids: list[uuid.UUID],
    *,
    actor_id: uuid.UUID | None,
    request_id: str | None,
    now: datetime,
) -> Events:
    """Users whose KYC just left APPROVED: cancel their open orders in the same transaction (the gate checks a
    taker only when it places; a resting order would otherwise match and fail at settlement), reservations
    released, reason KYC_NOT_APPROVED. Returns the book and order events to publish once after the commit."""
    return await cancel_users_orders(
        session, user_ids, reason=KYC_NOT_APPROVED, actor_id=actor_id, request_id=request_id, now=now
    )


def _sqlstate(exc: IntegrityError) -> str | None:
    """The SQLSTATE of a wrapped driver error (SQLAlchemy's asyncpg adapter carries it as `sqlstate`)."""
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)


async def submit(ctx: Context, details: KycDetails, session: AsyncSession | None = None) -> tuple[KycCase, Events]:
    """Returns the case and the events of the orders it canceled (a resubmission after a lapsed approval that no
    sweep wrote EXPIRED yet), to publish after the commit. `session`: the one to work on (default the request's)."""
    user_id = ctx.viewer.require_user()
    now = utcnow()
    details = validate(details, now.date())
    session = session or await ctx.session()
    try:  # details go under the user's own data key, so that an erasure can destroy it (resolvers/privacy)
        user_cipher = await cipher_for(session, ctx.services.cipher, user_id, create=True)
    except IntegrityError as exc:
        await session.rollback()
        raise Unauthenticated("this account no longer exists") from exc
    assert user_cipher is not None
    case = (
        await session.execute(select(KycCase).where(KycCase.user_id == user_id).with_for_update())
    ).scalar_one_or_none()
    current = KycStatus.NOT_STARTED if case is None else status_of(case, now)
    target = next_status(KycEvent.SUBMIT, current)
    if case is None:
        case = KycCase(id=uuid.uuid4(), user_id=user_id)
        session.add(case)
    case.status = target
    case.personal_data = encrypt_details(user_cipher, case.id, details)
    case.country = details.country
    case.submitted_at = now
    case.reviewed_by = case.reviewed_at = case.decision_reason = case.expires_at = None
    record(
        session,
        actor_id=user_id,
        action="kyc.submit",
        target_type="kyc_case",
        target_id=case.id,
        request_id=ctx.request_id,
        details={"from": current.value, "to": target.value},
    )
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        if _sqlstate(exc) == FOREIGN_KEY_VIOLATION:  # the account was deleted while its token was still valid
            raise Unauthenticated("this account no longer exists") from exc
        # two first submissions raced; the other one won
        raise Conflict("a KYC case for this user was created concurrently; retry") from exc
    await sync_users(session, [user_id], actor_id=user_id)  # back in review: no longer verified on chain
    events = await stop_trading(session, [user_id], actor_id=user_id, request_id=ctx.request_id, now=now)
    await unit_of_work.commit(session)
    return case, events


async def _transition(
    ctx: Context, case_id: uuid.UUID, event: KycEvent, reason: str | None, session: AsyncSession | None
) -> tuple[KycCase, Events]:
    """The case after `event`, and the events of the open orders canceled with it when its owner may not trade any
    more (any target but APPROVED), to publish after the commit."""
    role = ACTOR[event]
    assert role is not None
    actor = ctx.viewer.require_role(role.value)
    session = session or await ctx.session()
    case = (await session.execute(select(KycCase).where(KycCase.id == case_id).with_for_update())).scalar_one_or_none()
    if case is None:
        raise NotFound("KYC case not found")
    if case.user_id == actor:
        raise Forbidden("nobody may decide on their own KYC case")
    now = utcnow()
    current = status_of(case, now)
    target = next_status(event, current)
    case.status = target
    if event in (KycEvent.APPROVE, KycEvent.REJECT):
        case.reviewed_by, case.reviewed_at = actor, now
    validity = timedelta(days=ctx.settings.kyc_approval_days)  # KYC_APPROVAL_DAYS
    case.expires_at = (
        now + validity if target is KycStatus.APPROVED else (now if target is KycStatus.EXPIRED else case.expires_at)
    )
    case.decision_reason = reason
    details: dict[str, str] = {"from": current.value, "to": target.value}
    if reason:
        details["reason"] = reason
    record(
        session,
        actor_id=actor,
        action=f"kyc.{event.value.lower()}",
        target_type="kyc_case",
        target_id=case.id,
        request_id=ctx.request_id,
        details=details,
    )
    await session.flush()
    await sync_users(session, [case.user_id], actor_id=actor)  # the identity registries follow (registry_sync)
    events = Events()
    if target is not KycStatus.APPROVED:  # no longer allowed to trade: its resting orders leave the books
        events = await stop_trading(session, [case.user_id], actor_id=actor, request_id=ctx.request_id, now=now)
    await unit_of_work.commit(session)
    return case, events


def decision_reason(reason: str | None, required: bool) -> str | None:
    """A reviewer's reason for a decision (KYC here, erasure requests too): white space folded, at most MAX_REASON
    characters, refused when `required` and blank."""
    reason = " ".join(reason.split()) if reason else None
    if required and not reason:
        raise BadUserInput("a reason is required", field="reason")
    if reason and len(reason) > MAX_REASON:
        raise BadUserInput(f"reason must be at most {MAX_REASON} characters", field="reason")
    return reason


async def review(
    ctx: Context,
    case_id: uuid.UUID,
    decision: KycDecision,
    reason: str | None,
    session: AsyncSession | None = None,
) -> tuple[KycCase, Events]:
    reason = decision_reason(reason, required=decision is KycDecision.REJECT)
    event = KycEvent.APPROVE if decision is KycDecision.APPROVE else KycEvent.REJECT
    return await _transition(ctx, case_id, event, reason, session)


async def suspend(
    ctx: Context, case_id: uuid.UUID, reason: str, session: AsyncSession | None = None
) -> tuple[KycCase, Events]:
    return await _transition(ctx, case_id, KycEvent.SUSPEND, decision_reason(reason, required=True), session)


async def expire(
    ctx: Context, case_id: uuid.UUID, reason: str | None, session: AsyncSession | None = None
) -> tuple[KycCase, Events]:
    return await _transition(ctx, case_id, KycEvent.EXPIRE, decision_reason(reason, required=False), session)


# one batch of lapsed approvals: locked (SKIP LOCKED: a reviewer's transition in flight waits for the next pass),
# written EXPIRED (expires_at kept: when the approval lapsed) with one audit row each, in one statement
_EXPIRE_LAPSED = """
WITH due AS (SELECT id FROM kyc_cases WHERE status = 'APPROVED' AND expires_at <= $1
             ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED),
     up AS (UPDATE kyc_cases k SET status = $3::kyc_status, updated_at = $1 FROM due WHERE k.id = due.id
            RETURNING k.id, k.user_id),
     a AS (INSERT INTO audit_log (actor_id, action, target_type, target_id, request_id, details)
           SELECT NULL, 'kyc.expire', 'kyc_case', up.id::text, NULL,
                  jsonb_build_object('from', 'APPROVED', 'to', $3::text, 'reason', 'APPROVAL_LAPSED') FROM up)
SELECT coalesce(array_agg(user_id), '{}') FROM up"""
EXPIRE_BATCH = 500


async def _expire_batch_work(session: AsyncSession, now: datetime, limit: int) -> tuple[int, Events]:
    target = next_status(KycEvent.EXPIRE, KycStatus.APPROVED)  # the state machine decides, not this statement
    users = list(await (await pg(session)).fetchval(_EXPIRE_LAPSED, now, limit, target.value))
    await sync_users(session, users)  # their wallets leave the identity registries (registry_sync)
    events = await stop_trading(session, users, actor_id=None, request_id=None, now=now)  # and their orders the books
    await unit_of_work.commit(session)
    return len(users), events


@transient_retry
async def _expire_batch(session: AsyncSession, now: datetime, limit: int) -> tuple[int, Events]:
    # a batch job: each batch is its own transaction (expire_lapsed loops over them)
    return await _expire_batch_work(session, now, limit)


async def expire_lapsed(
    session: AsyncSession, now: datetime | None = None, batch: int = EXPIRE_BATCH, hub: Any | None = None
) -> int:
    """Write EXPIRED on every APPROVED case whose approval lapsed (`expires_at` <= now), batch by batch, each
    committed with its audit rows (action kyc.expire, no actor, reason APPROVAL_LAPSED) and with the cancel of its
    users' open orders (reason KYC_NOT_APPROVED). Reads already treat a lapsed approval as EXPIRED
    (`effective_status`); this makes the stored state, filters, indexes and books agree. The canceled orders' book
    and order events go out through `hub` (a PubSubHub) once per committed batch, as GTD expiry's do
    (resolvers/trading/expiry.py). Idempotent; returns how many cases it expired. Run periodically by the worker
    (jobs/kyc.py)."""
    now = now or utcnow()
    total = 0
    engine = session.bind if hub is not None and isinstance(session.bind, AsyncEngine) else None
    while True:
        if engine is not None:
            # its own session and task: the events of a committed batch go out even if this job is cancelled
            n, events = await sequencer.run_detached(
                engine, hub, lambda s: _expire_batch_work(s, now, batch), lambda done: done[1]
            )
        else:
            n, events = await _expire_batch(session, now, batch)
        if hub is not None:
            await market_data.publish(hub, events)
        if not n:
            return total
        total += n


async def list_cases(
    session: AsyncSession, status: KycStatus | None, first: int | None, after: str | None, now: datetime | None = None
) -> Page[KycCase]:
    """Review queue order: oldest submission first. Status filters use the effective status (lapsed = EXPIRED)."""
    now = now or utcnow()
    stmt = select(KycCase)
    if status is KycStatus.APPROVED:
        stmt = stmt.where(KycCase.status == status, or_(KycCase.expires_at.is_(None), KycCase.expires_at > now))
    elif status is KycStatus.EXPIRED:
        stmt = stmt.where(
            or_(KycCase.status == status, and_(KycCase.status == KycStatus.APPROVED, KycCase.expires_at <= now))
        )
    elif status is not None:
        stmt = stmt.where(KycCase.status == status)
    return await keyset_page(session, stmt, [KycCase.submitted_at, KycCase.id], first=first, after=after)
