"""Login sessions: access JWT + opaque refresh token, rotated on every use.

Each login starts a refresh-token family. Refreshing spends the presented token and issues the next one in the
same family; presenting a spent token again means it leaked, so the whole family is revoked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Unauthenticated
from core.jwt_keys import KeyRing
from core.opaque_tokens import digest, new_secret
from core.revocation import RevocationList
from models.identity import RefreshToken, RefreshTokenFamily, User, UserStatus
from resolvers.audit import record


@dataclass(frozen=True)
class IssuedSession:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    user: User
    family_id: uuid.UUID | None = None  # the login (session) these tokens belong to


async def start_session(session: AsyncSession, keyring: KeyRing, user: User, refresh_ttl_s: int) -> IssuedSession:
    family = RefreshTokenFamily(id=uuid.uuid4(), user_id=user.id)
    session.add(family)
    await session.flush()
    return await _issue(session, keyring, user, family.id, refresh_ttl_s)


async def _issue(
    session: AsyncSession, keyring: KeyRing, user: User, family_id: uuid.UUID, refresh_ttl_s: int
) -> IssuedSession:
    refresh = new_secret("rwar")
    now = datetime.now(UTC)
    session.add(
        RefreshToken(family_id=family_id, token_hash=digest(refresh), expires_at=now + timedelta(seconds=refresh_ttl_s))
    )
    access, exp = keyring.issue(user.id, list(user.roles), str(family_id))
    return IssuedSession(access, datetime.fromtimestamp(exp, UTC), refresh, user, family_id)


async def rotate(
    session: AsyncSession,
    keyring: KeyRing,
    presented: str,
    refresh_ttl_s: int,
    revocations: RevocationList | None = None,
    request_id: str | None = None,
) -> IssuedSession:
    """Spend `presented` and issue its successor. The row lock makes two concurrent uses count as reuse, which
    revokes the family: its refresh tokens here, its access tokens through `revocations`."""
    row = (
        await session.execute(
            select(RefreshToken, RefreshTokenFamily)
            .join(RefreshTokenFamily, RefreshTokenFamily.id == RefreshToken.family_id)
            .where(RefreshToken.token_hash == digest(presented))
            .with_for_update(of=RefreshToken)
        )
    ).first()
    if row is None:
        raise Unauthenticated("invalid refresh token")
    token, family = row
    now = datetime.now(UTC)
    if family.revoked_at is not None:
        raise Unauthenticated("session revoked")
    if token.spent_at is not None:
        await revoke_family(session, family.id, "REUSE_DETECTED")
        record(
            session,
            actor_id=family.user_id,
            action="user.refresh_token_reused",
            target_type="session",
            target_id=family.id,
            request_id=request_id,
        )
        # durable even if the refresh then fails: the reused family stays revoked (and is revoked in Redis after)
        await session.commit()
        if revocations is not None:
            await revocations.revoke_session(family.id)
        raise Unauthenticated(
            "refresh token reuse detected; all sessions of this login were revoked", reason="REFRESH_TOKEN_REUSED"
        )
    if token.expires_at <= now:
        raise Unauthenticated("refresh token expired")
    user = await session.get(User, family.user_id)
    if user is None or user.status is not UserStatus.ACTIVE:
        raise Unauthenticated("account disabled")
    token.spent_at = now
    return await _issue(session, keyring, user, family.id, refresh_ttl_s)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, reason: str) -> None:
    await session.execute(
        update(RefreshTokenFamily)
        .where(RefreshTokenFamily.id == family_id, RefreshTokenFamily.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC), revoked_reason=reason)
    )


async def family_of(session: AsyncSession, presented: str, user_id: uuid.UUID) -> uuid.UUID | None:
    """The session of a refresh token, if it is one of `user_id`'s (another user's token names no session of
    theirs: a caller can only end their own sessions)."""
    return (
        await session.execute(
            select(RefreshToken.family_id)
            .join(RefreshTokenFamily, RefreshTokenFamily.id == RefreshToken.family_id)
            .where(RefreshToken.token_hash == digest(presented), RefreshTokenFamily.user_id == user_id)
        )
    ).scalar_one_or_none()
