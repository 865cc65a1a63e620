"""Accounts: register, login (rate limits + lockout, the MFA step), logout, roles."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict, Forbidden, NotFound, Unauthenticated
from core.passwords import hash_password, verify_password
from core.rate_limit import hit
from models.identity import Role, User, UserStatus
from resolvers import unit_of_work
from resolvers.audit import record
from resolvers.context import Context
from resolvers.identity import mfa, mfa_flows
from resolvers.identity.sessions import IssuedSession, family_of, revoke_family, rotate, start_session
from resolvers.identity.validation import check_password, normalize_email

WINDOW_S = 60


@dataclass(frozen=True)
class Profile:
    id: uuid.UUID
    email: str
    roles: list[str]
    status: UserStatus
    created_at: datetime


async def _limit(ctx: Context, action: str, email: str) -> None:
    s, keys = ctx.settings, ctx.services.keys
    await hit(
        ctx.services.redis,
        keys("rl", action, "ip", ctx.viewer.client_ip),
        s.login_rate_per_minute * 3,
        WINDOW_S,
        f"{action} attempts from this address",
    )
    await hit(
        ctx.services.redis,
        keys("rl", action, "acct", email),
        s.login_rate_per_minute,
        WINDOW_S,
        f"{action} attempts for this account",
    )


async def create_user(session: AsyncSession, email: str, password: str, roles: list[str]) -> User:
    email = normalize_email(email)
    check_password(password)
    user = User(id=uuid.uuid4(), email=email, password_hash=hash_password(password), roles=roles)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("an account with this email already exists", field="email") from exc
    return user


async def register(ctx: Context, email: str, password: str) -> IssuedSession:
    normalized = normalize_email(email)
    await _limit(ctx, "register", normalized)
    session = await ctx.session()
    user = await create_user(session, normalized, password, [Role.INVESTOR.value])
    issued = await start_session(session, ctx.services.keyring, user, ctx.settings.refresh_token_ttl_s)
    record(
        session,
        actor_id=user.id,
        action="user.register",
        target_type="user",
        target_id=user.id,
        request_id=ctx.request_id,
    )
    await unit_of_work.commit(session)
    return issued


@dataclass(frozen=True)
class LoginResult:
    """Either a session, or (the account has MFA and no code came with the password) a challenge for
    `completeMfaLogin`."""

    session: IssuedSession | None
    mfa_challenge: mfa_flows.MfaChallenge | None


async def login(ctx: Context, email: str, password: str, mfa_code: str | None = None) -> LoginResult:
    try:
        normalized = normalize_email(email)
    except BadUserInput:
        raise Unauthenticated("invalid email or password")
    await _limit(ctx, "login", normalized)
    session = await ctx.session()
    user = (await session.execute(select(User).where(User.email == normalized).with_for_update())).scalar_one_or_none()
    now = datetime.now(UTC)
    if user is not None:
        mfa_flows.refuse_if_locked(user, now)
    if not verify_password(user.password_hash if user else None, password) or user is None:
        if user is not None:
            await _register_failure(session, ctx, user, now)
        raise Unauthenticated("invalid email or password")
    if user.status is not UserStatus.ACTIVE:
        raise Unauthenticated("account disabled")
    factor = await mfa.factor_for_update(session, user.id)
    if factor is not None and factor.confirmed_at is None:
        factor = None  # an enrolment never confirmed does not protect (nor block) the account
    mfa_kind: str | None = None
    if factor is None:
        required = mfa.roles_requiring_mfa(ctx.settings) & set(user.roles)
        if required:
            record(
                session,
                actor_id=user.id,
                action="user.login_refused",
                target_type="user",
                target_id=user.id,
                request_id=ctx.request_id,
                details={"reason": "MFA_ENROLMENT_REQUIRED"},
            )
            # durable even if the login is refused: the refusal's audit row must stay (the raise aborts the unit)
            await session.commit()
            raise Forbidden(
                f"{', '.join(sorted(required))} accounts must sign in with MFA in production: enrol "
                "with `rwa user mfa-enrol --email <your email>` on a server host",
                reason="MFA_ENROLMENT_REQUIRED",
            )
    elif not mfa_code:
        # the password was right: open a short-lived challenge instead of a session
        user.failed_logins, user.locked_until = 0, None
        challenge = await mfa_flows.open_challenge(ctx, user.id)
        record(
            session,
            actor_id=user.id,
            action="user.login_mfa_challenge",
            target_type="user",
            target_id=user.id,
            request_id=ctx.request_id,
        )
        await unit_of_work.commit(session)
        return LoginResult(None, challenge)
    else:
        await mfa_flows.limit_codes(ctx, user.id)
        mfa_kind = await mfa.check_code(
            session, ctx.services.cipher, ctx.settings, factor, mfa_code, Unauthenticated, ctx.request_id
        )
    return LoginResult(await mfa_flows.open_login_session(ctx, session, user, mfa_kind), None)


async def _register_failure(session: AsyncSession, ctx: Context, user: User, now: datetime) -> None:
    """Lock for login_lock_s after N failures, doubling with every further failure (capped at a day)."""
    user.failed_logins += 1
    over = user.failed_logins - ctx.settings.login_failures_before_lock
    if over >= 0:
        user.locked_until = now + timedelta(seconds=min(ctx.settings.login_lock_s * (2**over), 86_400))
    # durable even if the login then fails: the failure counter and lock must stay (the raise aborts the unit)
    await session.commit()


async def refresh(ctx: Context, refresh_token: str) -> IssuedSession:
    session = await ctx.session()
    issued = await rotate(
        session,
        ctx.services.keyring,
        refresh_token,
        ctx.settings.refresh_token_ttl_s,
        ctx.services.revocations,
        ctx.request_id,
    )
    required = mfa.roles_requiring_mfa(ctx.settings) & set(issued.user.roles)
    if required and not await mfa.has_active_factor(session, issued.user.id):
        # a session opened before the account gained a staff role must not refresh into a staff token without MFA
        await session.rollback()
        raise Forbidden(
            f"{', '.join(sorted(required))} accounts must use MFA in production: enrol with "
            "`rwa user mfa-enrol --email <your email>` on a server host",
            reason="MFA_ENROLMENT_REQUIRED",
        )
    record(
        session,
        actor_id=issued.user.id,
        action="user.refresh_token",
        target_type="session",
        target_id=issued.family_id,
        request_id=ctx.request_id,
    )
    await unit_of_work.commit(session)
    return issued


async def logout(ctx: Context, refresh_token: str | None) -> bool:
    """End one of the caller's sessions: the one of the presented refresh token, else the access token's own.
    Its refresh tokens are revoked and its access tokens refused from now on, on every process. A refresh token
    that is not one of the caller's names no session (NOT_FOUND, nothing revoked)."""
    user_id = ctx.viewer.require_user()
    session = await ctx.session()
    if refresh_token:
        family = await family_of(session, refresh_token, user_id)
        if family is None:
            raise NotFound("no such session of yours", field="refreshToken")
    elif ctx.viewer.session_family:
        family = uuid.UUID(ctx.viewer.session_family)
    else:
        raise BadUserInput("no session to log out of", field="refreshToken")
    await revoke_family(session, family, "LOGOUT")
    record(
        session,
        actor_id=user_id,
        action="user.logout",
        target_type="session",
        target_id=family,
        request_id=ctx.request_id,
    )
    # durable before the revocation goes to Redis: other processes refuse the session only once it is ended here
    await session.commit()
    await ctx.services.revocations.revoke_session(family)
    return True


_PROFILE_SQL = "SELECT id, email, roles, status, created_at FROM users WHERE id = $1"


async def get_profile(ctx: Context, user_id: uuid.UUID) -> Profile:
    """Hot path of `me`: one raw statement, no ORM, no compilation."""
    row = await ctx.fetch_one(_PROFILE_SQL, user_id)
    if row is None:
        raise NotFound("user not found")
    return Profile(row[0], row[1], list(row[2]), UserStatus(row[3]), row[4])


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    return user


async def set_role(ctx: Context, user_id: uuid.UUID, role: Role, granted: bool) -> User:
    actor = ctx.viewer.require_role(Role.ADMIN.value)
    session = await ctx.session()
    user = (await session.execute(select(User).where(User.id == user_id).with_for_update())).scalar_one_or_none()
    if user is None:
        raise NotFound("user not found")
    roles = set(user.roles)
    if granted:
        roles.add(role.value)
    else:
        if actor == user.id and role is Role.ADMIN:
            raise Conflict("an admin cannot revoke their own ADMIN role")
        roles.discard(role.value)
    lost_role = not set(user.roles) <= roles
    user.roles = sorted(roles)
    record(
        session,
        actor_id=actor,
        action="user.grant_role" if granted else "user.revoke_role",
        target_type="user",
        target_id=user.id,
        request_id=ctx.request_id,
        details={"role": role.value},
    )
    # durable before the revocation goes to Redis: tokens are refused only once the role change is stored
    await session.commit()
    if lost_role:  # tokens carry roles: end the ones that still claim it (the next refresh issues the new set)
        await ctx.services.revocations.revoke_user(user.id)
    return user


async def create_admin(session: AsyncSession, email: str, password: str) -> User:
    """`rwa user create-admin`: create the account or promote an existing one."""
    normalized = normalize_email(email)
    existing = (await session.execute(select(User).where(User.email == normalized))).scalar_one_or_none()
    if existing is not None:
        await session.execute(
            update(User).where(User.id == existing.id).values(roles=sorted(set(existing.roles) | {Role.ADMIN.value}))
        )
        user = existing
    else:
        user = await create_user(session, normalized, password, [Role.INVESTOR.value, Role.ADMIN.value])
    record(
        session,
        actor_id=None,
        action="user.create_admin",
        target_type="user",
        target_id=user.id,
        details={"via": "cli"},
    )
    await unit_of_work.commit(session)
    return user
