"""The right to erasure (GDPR art. 17): a user asks (`requestErasure`), COMPLIANCE decides (`processErasure`).

Erasing an account, in one transaction:
- its personal data becomes unreadable by crypto-shredding: the user's data key (core/data_keys.py) is destroyed,
  so the KYC details, and every copy of their ciphertext (replicas, backups taken from now on, exports of rows),
  cannot be decrypted by anyone, the platform included. With `PRIVACY_KYC_RETENTION_DAYS` > 0 (a legal hold such
  as AML record keeping) the key is kept that long, readable by COMPLIANCE only, then destroyed by the retention job;
- the email becomes a pseudonym (`erased+<hash>@erased.invalid`), the password hash an unusable value and the
  account DISABLED: signing in is impossible, and every token of the account ends at once on every process (the
  users trigger, core/user_changes.py); sessions, API keys, the MFA factor and OAuth clients are deleted or revoked;
- what the law requires to keep stays, under the user's id, which is now a pseudonym: the ledger (still balanced),
  orders and trades, payments and withdrawals, the audit log (append-only). Linked wallet addresses stay as the
  key between that history and the chains, but they leave the identity registries: an approved KYC case expires
  (a pending one is rejected) through the KYC state machine; the case keeps its dates, not its country.

It is refused (CONFLICT `ERASURE_BLOCKED`, with `blockers`) while the account has open orders, withdrawals in
flight, trades not yet settled on chain or security tokens in its wallets: COMPLIANCE settles those first. Nobody decides on their own request.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, Forbidden, NotFound
from models.identity import ApiKey, KycCase, KycStatus, RefreshTokenFamily, Role, User, UserMfa, UserStatus
from models.oauth import OAuthClient, OAuthClientSecret
from models.privacy import ErasureRequest, ErasureStatus
from resolvers import unit_of_work
from resolvers.audit import record
from resolvers.context import Context
from resolvers.identity.kyc import decision_reason, status_of
from resolvers.identity.kyc_states import KycEvent, next_status
from resolvers.identity.registry_sync import sync_users
from resolvers.pagination import Page, keyset_page
from resolvers.privacy import keys
from resolvers.viewer import forget_api_key

ERASED_DOMAIN = "erased.invalid"
UNUSABLE_PASSWORD = "!erased"  # not an argon2 hash: verify_password is always False


class ErasureDecision(str, enum.Enum):
    ERASE = "ERASE"
    REJECT = "REJECT"


def utcnow() -> datetime:
    return datetime.now(UTC)


def pseudonym_email(user_id: uuid.UUID) -> str:
    return f"erased+{hashlib.sha256(b'rwa-erased:' + user_id.bytes).hexdigest()[:24]}@{ERASED_DOMAIN}"


async def request(ctx: Context, reason: str | None) -> ErasureRequest:
    viewer = ctx.viewer
    user_id = viewer.require_user()
    if not viewer.interactive:
        raise Forbidden("an erasure request needs your own sign-in (not an API key or an OAuth client)")
    reason = decision_reason(reason, required=False)
    session = await ctx.session()
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())
    pending = (
        await session.execute(
            select(ErasureRequest.id).where(
                ErasureRequest.user_id == user_id, ErasureRequest.status == ErasureStatus.PENDING
            )
        )
    ).scalar()
    if pending is not None:
        raise Conflict("an erasure request of yours is already pending", requestId=str(pending))
    row = ErasureRequest(
        id=uuid.uuid4(), user_id=user_id, status=ErasureStatus.PENDING, reason=reason, requested_at=utcnow()
    )
    session.add(row)
    record(
        session,
        actor_id=user_id,
        action="privacy.erasure_request",
        target_type="erasure_request",
        target_id=row.id,
        request_id=ctx.request_id,
    )
    await unit_of_work.commit(session)
    return row


_BLOCKERS = """
SELECT (SELECT count(*) FROM orders WHERE user_id = :uid AND status IN ('NEW', 'PARTIALLY_FILLED')) AS open_orders,
       (SELECT count(*) FROM withdrawals WHERE user_id = :uid AND state IN ('PENDING_APPROVAL', 'APPROVED'))
         AS open_withdrawals,
       (SELECT count(*) FROM trades WHERE (buyer_id = :uid OR seller_id = :uid) AND settlement = 'PENDING')
         AS pending_settlements,
       (SELECT count(*) FROM holdings h JOIN wallets w ON w.address = h.holder
        WHERE w.user_id = :uid AND h.balance > 0) AS token_holdings"""


async def blockers(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    """What must be settled before an account can be erased: open orders and withdrawals, trades whose settlement
    is still on its way, and security tokens held in its wallets (a register cannot name a holder nobody knows)."""
    row = (await session.execute(text(_BLOCKERS), {"uid": user_id})).one()
    found = []
    for name, count in (
        ("OPEN_ORDERS", row.open_orders),
        ("OPEN_WITHDRAWALS", row.open_withdrawals),
        ("PENDING_SETTLEMENTS", row.pending_settlements),
        ("TOKEN_HOLDINGS", row.token_holdings),
    ):
        if count:
            found.append(name)
    return found


async def process(ctx: Context, request_id: uuid.UUID, decision: ErasureDecision, reason: str | None) -> ErasureRequest:
    actor = ctx.viewer.require_role(Role.COMPLIANCE.value)
    reason = decision_reason(reason, required=decision is ErasureDecision.REJECT)
    session = await ctx.session()
    row = (
        await session.execute(select(ErasureRequest).where(ErasureRequest.id == request_id).with_for_update())
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("no such erasure request")
    if row.user_id == actor:
        raise Forbidden("nobody may decide on their own erasure request")
    if row.status is not ErasureStatus.PENDING:
        raise Conflict(f"the request is already {row.status.value}", current=row.status.value)
    now = utcnow()
    if decision is ErasureDecision.REJECT:
        row.processed_by, row.processed_at, row.decision_reason = actor, now, reason
        row.status = ErasureStatus.REJECTED
        record(
            session,
            actor_id=actor,
            action="privacy.erasure_reject",
            target_type="erasure_request",
            target_id=row.id,
            request_id=ctx.request_id,
            details={"reason": reason},
        )
        await unit_of_work.commit(session)
        return row
    user = (await session.execute(select(User).where(User.id == row.user_id).with_for_update())).scalar_one()
    found = await blockers(session, user.id)
    if found:
        raise Conflict("settle the account first: " + ", ".join(found), reason="ERASURE_BLOCKED", blockers=found)
    row.processed_by, row.processed_at, row.decision_reason = actor, now, reason
    hold_days = ctx.settings.privacy_kyc_retention_days
    revoked_keys, secret_ids = await _erase(session, user, now, destroy_key=hold_days == 0)
    await _close_kyc(session, user.id, actor, now)
    row.status = ErasureStatus.COMPLETED
    row.key_destroy_after = None if hold_days == 0 else now + timedelta(days=hold_days)
    record(
        session,
        actor_id=actor,
        action="privacy.erasure",
        target_type="user",
        target_id=user.id,
        request_id=ctx.request_id,
        details={
            "request": str(row.id),
            "keyDestroyed": hold_days == 0,
            "keyDestroyAfter": row.key_destroy_after.isoformat() if row.key_destroy_after else None,
        },
    )
    # durable before the account's tokens and API keys are revoked in Redis on every process
    await session.commit()
    # every token of the account ends on every process now (the users trigger does it too, once its listener runs)
    await ctx.services.revocations.revoke_user(user.id)
    for key_hash in revoked_keys:
        forget_api_key(ctx.services, key_hash)
        await ctx.services.revocations.revoke_api_key(key_hash)
    for sid in secret_ids:
        await ctx.services.revocations.revoke_session(sid)
    return row


async def _erase(
    session: AsyncSession, user: User, now: datetime, *, destroy_key: bool
) -> tuple[list[str], list[uuid.UUID]]:
    user.email = pseudonym_email(user.id)
    user.password_hash = UNUSABLE_PASSWORD
    user.status = UserStatus.DISABLED
    user.failed_logins, user.locked_until = 0, None
    await session.execute(delete(RefreshTokenFamily).where(RefreshTokenFamily.user_id == user.id))
    await session.execute(delete(UserMfa).where(UserMfa.user_id == user.id))
    key_hashes = list(
        (await session.execute(delete(ApiKey).where(ApiKey.user_id == user.id).returning(ApiKey.key_hash))).scalars()
    )
    clients = select(OAuthClient.id).where(OAuthClient.owner_id == user.id).scalar_subquery()
    secret_ids = list(
        (
            await session.execute(
                update(OAuthClientSecret)
                .where(OAuthClientSecret.client_pk.in_(clients), OAuthClientSecret.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(OAuthClientSecret.id)
            )
        ).scalars()
    )
    await session.execute(
        update(OAuthClient)
        .where(OAuthClient.owner_id == user.id, OAuthClient.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if destroy_key:
        await shred(session, user.id, now)
    return key_hashes, secret_ids


async def _close_kyc(session: AsyncSession, user_id: uuid.UUID, actor: uuid.UUID, now: datetime) -> None:
    """The erased person is no longer a verified investor: an approval expires now, a pending case is rejected
    (through the KYC state machine), and their wallets leave the identity registries (registry_sync, by the agent)."""
    case = (
        await session.execute(select(KycCase).where(KycCase.user_id == user_id).with_for_update())
    ).scalar_one_or_none()
    if case is not None:
        current = status_of(case, now)
        event = {KycStatus.APPROVED: KycEvent.EXPIRE, KycStatus.PENDING_REVIEW: KycEvent.REJECT}.get(current)
        if event is not None:
            case.status = next_status(event, current)
            case.reviewed_by, case.reviewed_at = (
                (actor, now) if event is KycEvent.REJECT else (case.reviewed_by, case.reviewed_at)
            )
            case.expires_at = now if event is KycEvent.EXPIRE else case.expires_at
            record(
                session,
                actor_id=actor,
                action=f"kyc.{event.value.lower()}",
                target_type="kyc_case",
                target_id=case.id,
                details={"from": current.value, "to": case.status.value, "reason": "ACCOUNT_ERASED"},
            )
        case.decision_reason = "account erased"
    await session.flush()
    await sync_users(session, [user_id], actor_id=actor)


async def shred(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    """Destroy the data key, and the clear-text KYC field that goes with it (the country)."""
    await keys.destroy(session, user_id, now)
    await session.execute(update(KycCase).where(KycCase.user_id == user_id).values(country=None))


async def list_requests(
    session: AsyncSession, status: ErasureStatus | None, first: int | None, after: str | None
) -> Page[ErasureRequest]:
    stmt = select(ErasureRequest)
    if status is not None:
        stmt = stmt.where(ErasureRequest.status == status)
    return await keyset_page(session, stmt, [ErasureRequest.requested_at, ErasureRequest.id], first=first, after=after)


async def my_requests(session: AsyncSession, user_id: uuid.UUID) -> list[ErasureRequest]:
    return list(
        (
            await session.execute(
                select(ErasureRequest)
                .where(ErasureRequest.user_id == user_id)
                .order_by(ErasureRequest.requested_at.desc())
            )
        ).scalars()
    )
