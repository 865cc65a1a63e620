"""MFA through the API: enrolment, the login challenge, disabling and regenerating recovery codes.

The login challenge is a random 256-bit id kept in Redis for MFA_CHALLENGE_TTL_S (under its sha256, so a Redis
dump does not hold usable challenges), naming the user whose password was verified. It is spent by the first
successful `completeMfaLogin`; wrong codes count on the factor's lock (resolvers/identity/mfa.py) and on the
per-account and per-address rate limits, so neither a challenge nor fresh logins give unlimited guesses.
Every step writes an audit row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Forbidden, RateLimited, Unauthenticated
from core.opaque_tokens import digest, new_secret
from core.rate_limit import hit
from models.identity import User, UserStatus
from resolvers import unit_of_work
from resolvers.audit import record
from resolvers.context import Context
from resolvers.identity import mfa
from resolvers.identity.sessions import IssuedSession, start_session

WINDOW_S = 60


@dataclass(frozen=True)
class MfaChallenge:
    challenge: str
    expires_at: datetime


async def limit_codes(ctx: Context, account: object | None) -> None:
    """Code attempts share the login budget: per address and per account (when known), per minute."""
    s, keys = ctx.settings, ctx.services.keys
    await hit(
        ctx.services.redis,
        keys("rl", "mfa", "ip", ctx.viewer.client_ip),
        s.login_rate_per_minute * 3,
        WINDOW_S,
        "MFA code attempts from this address",
    )
    if account is None:  # e.g. an unknown challenge: one shared bucket would let anyone block everybody
        return
    await hit(
        ctx.services.redis,
        keys("rl", "mfa", "acct", account),
        s.login_rate_per_minute,
        WINDOW_S,
        "MFA code attempts for this account",
    )


def _challenge_key(ctx: Context, challenge: str) -> str:
    return ctx.services.keys("mfa", "challenge", digest(challenge))


async def open_challenge(ctx: Context, user_id: uuid.UUID) -> MfaChallenge:
    challenge = new_secret("rwamfa")
    ttl = ctx.settings.mfa_challenge_ttl_s
    await ctx.services.redis.set(_challenge_key(ctx, challenge), str(user_id), ex=ttl)
    return MfaChallenge(challenge, datetime.now(UTC) + timedelta(seconds=ttl))


async def complete_login(ctx: Context, challenge: str, code: str) -> IssuedSession:
    """Spend a login challenge with a TOTP or recovery code: the session the password alone did not open."""
    invalid = Unauthenticated("MFA challenge expired, used or unknown; sign in again", reason="MFA_CHALLENGE_INVALID")
    if not challenge or len(challenge) > 200:
        raise invalid
    key = _challenge_key(ctx, challenge)
    raw = await ctx.services.redis.get(key)
    if raw is None:
        await limit_codes(ctx, None)
        raise invalid
    user_id = uuid.UUID(raw.decode() if isinstance(raw, bytes) else raw)
    await limit_codes(ctx, user_id)
    session = await ctx.session()
    user = (await session.execute(select(User).where(User.id == user_id).with_for_update())).scalar_one_or_none()
    if user is None or user.status is not UserStatus.ACTIVE:
        raise Unauthenticated("account disabled")
    refuse_if_locked(user, datetime.now(UTC))
    row = await mfa.factor_for_update(session, user_id)
    if row is None or row.confirmed_at is None:
        raise invalid
    kind = await mfa.check_code(session, ctx.services.cipher, ctx.settings, row, code, Unauthenticated, ctx.request_id)
    if await ctx.services.redis.delete(key) == 0:  # a concurrent completion spent it first
        await session.rollback()
        raise invalid
    return await open_login_session(ctx, session, user, kind)


def refuse_if_locked(user: User, now: datetime) -> None:
    """RATE_LIMITED while the account is locked after repeated failed logins, whatever the credential."""
    if user.locked_until is not None and user.locked_until > now:
        raise RateLimited(
            "account temporarily locked after repeated failures",
            retry_after=int((user.locked_until - now).total_seconds()) + 1,
        )


async def open_login_session(ctx: Context, session: AsyncSession, user: User, mfa_kind: str | None) -> IssuedSession:
    """The password (and the MFA code, when one was needed) checked out: clear the failure count and the lock, open
    a session and audit `user.login` (with the code's kind, if any), committed; for login and completeMfaLogin."""
    user.failed_logins, user.locked_until = 0, None
    issued = await start_session(session, ctx.services.keyring, user, ctx.settings.refresh_token_ttl_s)
    record(
        session,
        actor_id=user.id,
        action="user.login",
        target_type="user",
        target_id=user.id,
        request_id=ctx.request_id,
        details={"mfa": mfa_kind} if mfa_kind else None,
    )
    await unit_of_work.commit(session)
    return issued


async def _me(ctx: Context) -> User:
    user_id = ctx.viewer.require_user()
    session = await ctx.session()
    user = await session.get(User, user_id)
    if user is None:
        raise Unauthenticated("account not found")
    return user


async def begin_enrolment(ctx: Context) -> mfa.Enrolment:
    user = await _me(ctx)
    session = await ctx.session()
    enrolment = await mfa.begin(session, ctx.services.cipher, user.id, user.email, ctx.settings.mfa_issuer)
    record(
        session,
        actor_id=user.id,
        action="mfa.enrolment_begin",
        target_type="user",
        target_id=user.id,
        request_id=ctx.request_id,
    )
    await unit_of_work.commit(session)
    return enrolment


async def confirm_enrolment(ctx: Context, code: str) -> list[str]:
    user_id = ctx.viewer.require_user()
    await limit_codes(ctx, user_id)
    session = await ctx.session()
    codes = await mfa.confirm(session, ctx.services.cipher, ctx.settings, user_id, code, BadUserInput, ctx.request_id)
    record(
        session,
        actor_id=user_id,
        action="mfa.enrolment_confirm",
        target_type="user",
        target_id=user_id,
        request_id=ctx.request_id,
        details={"recovery_codes": len(codes)},
    )
    await unit_of_work.commit(session)
    return codes


async def disable(ctx: Context, code: str) -> bool:
    """Remove the factor, given a fresh code. Staff who must use MFA in production cannot drop it."""
    user = await _me(ctx)
    required = mfa.roles_requiring_mfa(ctx.settings) & set(user.roles)
    if required:
        raise Forbidden(
            f"MFA is required for {', '.join(sorted(required))} in production and cannot be disabled",
            reason="MFA_REQUIRED_FOR_ROLE",
        )
    await limit_codes(ctx, user.id)
    session = await ctx.session()
    row = await mfa.confirmed_factor(session, user.id)
    kind = await mfa.check_code(
        session, ctx.services.cipher, ctx.settings, row, code, BadUserInput, ctx.request_id, field="code"
    )
    await mfa.remove(session, user.id)
    record(
        session,
        actor_id=user.id,
        action="mfa.disable",
        target_type="user",
        target_id=user.id,
        request_id=ctx.request_id,
        details={"with": kind},
    )
    await unit_of_work.commit(session)
    return True


async def regenerate_recovery_codes(ctx: Context, code: str) -> list[str]:
    user_id = ctx.viewer.require_user()
    await limit_codes(ctx, user_id)
    session = await ctx.session()
    row = await mfa.confirmed_factor(session, user_id)
    kind = await mfa.check_code(
        session, ctx.services.cipher, ctx.settings, row, code, BadUserInput, ctx.request_id, field="code"
    )
    codes = mfa.regenerate_codes(row)
    record(
        session,
        actor_id=user_id,
        action="mfa.recovery_codes_regenerate",
        target_type="user",
        target_id=user_id,
        request_id=ctx.request_id,
        details={"with": kind, "recovery_codes": len(codes)},
    )
    await unit_of_work.commit(session)
    return codes


async def my_state(ctx: Context) -> mfa.MfaState:
    user_id = ctx.viewer.require_user()
    return await mfa.state(await ctx.session(), user_id)
