"""Multi-factor authentication: a TOTP second factor (RFC 6238) with one-time recovery codes.

Rules:
- enrolment: `begin` stores a new random secret (160 bits, base32; SHA1, 6 digits, 30 s: what authenticator apps
  expect), encrypted with the KYC field cipher (associated data = the user id, so a ciphertext cannot be moved to
  another user). It is inactive until `confirm` gets a first valid code; confirming returns 10 recovery codes,
  shown once.
- a code is accepted for the current 30 s step or one step either side (clock drift), and only for a step after
  the last accepted one: a code cannot be replayed, not even within its window.
- a recovery code works once (its hash is removed when spent) wherever a TOTP code is accepted.
- failures count on the factor, not the password: after LOGIN_FAILURES_BEFORE_LOCK failures the factor is locked
  for LOGIN_LOCK_S, doubling with every further failure (capped at a day), exactly like the password lockout; the
  callers also rate-limit attempts per account and per address on Redis (core/rate_limit.py).
- recovery codes are stored as sha256 digests, not argon2: each carries 80 random bits, so an offline search of a
  leaked digest is out of reach without key stretching, while argon2 would cost ~10 hashes (one per stored code)
  for every attempt on the login path. Online guessing is bounded by the lock above.

Domain functions take a session and typed arguments (no request), so the CLI can call them too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.encryption import FieldCipher
from core.errors import AppError, Conflict, RateLimited
from core.settings import Settings
from models.identity import UserMfa
from resolvers.audit import record

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_CODES = 10


@dataclass(frozen=True)
class Enrolment:
    otpauth_uri: str
    secret: str


@dataclass(frozen=True)
class MfaState:
    enabled: bool
    pending: bool
    confirmed_at: datetime | None
    recovery_codes_left: int


def _aad(user_id: uuid.UUID) -> bytes:
    return b"mfa-totp:" + user_id.bytes


def _secret(cipher: FieldCipher, row: UserMfa) -> str:
    return cipher.decrypt(row.secret_enc, _aad(row.user_id)).decode()


def roles_requiring_mfa(settings: Settings) -> set[str]:
    """Roles that must sign in with a second factor: enforced only when RWA_ENV=production."""
    if not settings.is_production:
        return set()
    return {r.strip().upper() for r in settings.mfa_required_roles.split(",") if r.strip()}


def recovery_digest(code: str) -> str:
    normalized = "".join(ch for ch in code.upper() if ch.isalnum())
    return hashlib.sha256(b"rwa-mfa-recovery:" + normalized.encode()).hexdigest()


def _new_recovery_codes() -> tuple[list[str], list[str]]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(10)).decode()  # 80 bits -> 16 base32 characters
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes, [recovery_digest(c) for c in codes]


def matching_step(secret: str, code: str, last_used_step: int | None, now: float) -> int | None:
    """The time-step `code` is valid for (current +- DRIFT_STEPS), if it is later than `last_used_step`."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S, digest=hashlib.sha1)
    current = int(now // STEP_S)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step if last_used_step is None or step > last_used_step else None
    return None


async def factor_for_update(session: AsyncSession, user_id: uuid.UUID) -> UserMfa | None:
    return (
        await session.execute(select(UserMfa).where(UserMfa.user_id == user_id).with_for_update())
    ).scalar_one_or_none()


async def state(session: AsyncSession, user_id: uuid.UUID) -> MfaState:
    row = await session.get(UserMfa, user_id)
    if row is None:
        return MfaState(False, False, None, 0)
    return MfaState(
        row.confirmed_at is not None,
        row.confirmed_at is None,
        row.confirmed_at,
        len(row.recovery_code_hashes) if row.confirmed_at is not None else 0,
    )


async def has_active_factor(session: AsyncSession, user_id: uuid.UUID) -> bool:
    return (
        await session.execute(select(UserMfa.confirmed_at).where(UserMfa.user_id == user_id))
    ).scalar_one_or_none() is not None


async def begin(session: AsyncSession, cipher: FieldCipher, user_id: uuid.UUID, email: str, issuer: str) -> Enrolment:
    """Store a fresh pending secret (replacing an unconfirmed one). The caller audits and commits."""
    row = await factor_for_update(session, user_id)
    if row is not None and row.confirmed_at is not None:
        raise Conflict(
            "MFA is already enabled; disable it first to enrol a new authenticator", reason="MFA_ALREADY_ENABLED"
        )
    secret = pyotp.random_base32(32)  # 160 bits, the key size RFC 4226 recommends for HMAC-SHA1
    blob = cipher.encrypt(secret.encode(), _aad(user_id))
    if row is None:
        row = UserMfa(user_id=user_id, secret_enc=blob, recovery_code_hashes=[], failed_attempts=0)
        session.add(row)
    else:
        row.secret_enc, row.last_used_step, row.recovery_code_hashes = blob, None, []
    await session.flush()
    uri = pyotp.TOTP(
        secret, digits=DIGITS, interval=STEP_S, digest=hashlib.sha1, issuer=issuer, name=email
    ).provisioning_uri()
    # spelled out although they are the Key URI Format defaults: some apps mis-handle absent parameters
    return Enrolment(f"{uri}&algorithm=SHA1&digits={DIGITS}&period={STEP_S}", secret)


async def check_code(
    session: AsyncSession,
    cipher: FieldCipher,
    settings: Settings,
    row: UserMfa,
    code: str,
    error: type[AppError],
    request_id: str | None = None,
    **error_extensions: object,
) -> str:
    """Accept a TOTP code (or a recovery code once the factor is confirmed) and return which kind it was, or
    count the failure (committed at once, like a password failure) and raise `error`. A locked factor raises
    RateLimited without looking at the code."""
    now = datetime.now(UTC)
    if row.locked_until is not None and row.locked_until > now:
        raise RateLimited(
            "too many wrong MFA codes; the second factor is temporarily locked",
            retry_after=int((row.locked_until - now).total_seconds()) + 1,
        )
    step = matching_step(_secret(cipher, row), code or "", row.last_used_step, time.time())
    kind: str | None = None
    if step is not None:
        row.last_used_step, kind = step, "totp"
    elif row.confirmed_at is not None and code:
        digest = recovery_digest(code)
        if any(hmac.compare_digest(digest, h) for h in row.recovery_code_hashes):
            row.recovery_code_hashes = [h for h in row.recovery_code_hashes if h != digest]
            kind = "recovery_code"
    if kind is None:
        row.failed_attempts += 1
        over = row.failed_attempts - settings.login_failures_before_lock
        if over >= 0:
            row.locked_until = now + timedelta(seconds=min(settings.login_lock_s * (2**over), 86_400))
        record(
            session,
            actor_id=row.user_id,
            action="mfa.code_rejected",
            target_type="user",
            target_id=row.user_id,
            request_id=request_id,
            details={"failures": row.failed_attempts, "locked": over >= 0},
        )
        # durable even if the operation then fails: the wrong-code counter and lock must stay
        await session.commit()
        raise error("invalid MFA code", reason="MFA_CODE_INVALID", **error_extensions)
    row.failed_attempts, row.locked_until = 0, None
    return kind


async def confirm(
    session: AsyncSession,
    cipher: FieldCipher,
    settings: Settings,
    user_id: uuid.UUID,
    code: str,
    error: type[AppError],
    request_id: str | None = None,
) -> list[str]:
    """Activate the pending secret with a first valid code; return the recovery codes (plain text, shown once)."""
    row = await factor_for_update(session, user_id)
    if row is None:
        raise Conflict("no MFA enrolment in progress; call beginMfaEnrolment first", reason="MFA_NOT_ENROLLING")
    if row.confirmed_at is not None:
        raise Conflict("MFA is already enabled", reason="MFA_ALREADY_ENABLED")
    await check_code(session, cipher, settings, row, code, error, request_id, field="code")
    codes, hashes = _new_recovery_codes()
    row.confirmed_at, row.recovery_code_hashes = datetime.now(UTC), hashes
    return codes


async def confirmed_factor(session: AsyncSession, user_id: uuid.UUID) -> UserMfa:
    row = await factor_for_update(session, user_id)
    if row is None or row.confirmed_at is None:
        raise Conflict("MFA is not enabled", reason="MFA_NOT_ENABLED")
    return row


async def remove(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(delete(UserMfa).where(UserMfa.user_id == user_id))


def regenerate_codes(row: UserMfa) -> list[str]:
    codes, hashes = _new_recovery_codes()
    row.recovery_code_hashes = hashes
    return codes
