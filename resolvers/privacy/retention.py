"""Retention: what is kept only for a while is deleted once its period is over (the worker runs `purge` hourly).

- data keys of erased accounts held under `PRIVACY_KYC_RETENTION_DAYS`: destroyed once `key_destroy_after` passed
  (their KYC details become unreadable, as with an immediate erasure); a key found again for an erased account (a
  database restored from a backup taken before the erasure) is destroyed again on the next run;
- login sessions ended (revoked, or every refresh token expired) more than `PRIVACY_SESSION_RETENTION_DAYS` ago;
- API keys revoked more than `PRIVACY_API_KEY_RETENTION_DAYS` ago.
The ledger, trades, orders, payments, withdrawals and the audit log are kept (financial and AML record keeping);
they hold no personal data of an erased account beyond its pseudonymous id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import rowcount
from core.settings import Settings
from resolvers.audit import record
from resolvers.privacy.erasure import shred

_DUE_KEYS = """
SELECT r.user_id FROM erasure_requests r JOIN user_data_keys d ON d.user_id = r.user_id
WHERE r.status = 'COMPLETED' AND d.wrapped_key IS NOT NULL
  AND (r.key_destroy_after IS NULL OR r.key_destroy_after <= :now)
ORDER BY r.user_id LIMIT 500 FOR UPDATE OF d SKIP LOCKED"""

_OLD_SESSIONS = """
DELETE FROM refresh_token_families f
WHERE f.created_at < :cutoff
  AND (f.revoked_at < :cutoff
       OR NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = f.id AND t.expires_at >= :cutoff))"""

_OLD_API_KEYS = "DELETE FROM api_keys WHERE revoked_at < :cutoff"


@dataclass(frozen=True)
class Purged:
    keys_destroyed: int
    sessions: int
    api_keys: int


async def purge(session: AsyncSession, settings: Settings, now: datetime | None = None) -> Purged:
    now = now or datetime.now(UTC)
    due = list((await session.execute(text(_DUE_KEYS), {"now": now})).scalars())
    for user_id in due:
        await shred(session, user_id, now)
        record(
            session,
            actor_id=None,
            action="privacy.key_destroyed",
            target_type="user",
            target_id=user_id,
            details={"reason": "RETENTION_ENDED"},
        )
    sessions = rowcount(
        await session.execute(
            text(_OLD_SESSIONS), {"cutoff": now - timedelta(days=settings.privacy_session_retention_days)}
        )
    )
    api_keys = rowcount(
        await session.execute(
            text(_OLD_API_KEYS), {"cutoff": now - timedelta(days=settings.privacy_api_key_retention_days)}
        )
    )
    result = Purged(len(due), int(sessions or 0), int(api_keys or 0))
    if result.sessions or result.api_keys:
        record(
            session,
            actor_id=None,
            action="privacy.retention_purge",
            target_type="retention",
            details={"sessions": result.sessions, "apiKeys": result.api_keys},
        )
    # a retention job: its purge is its own transaction
    await session.commit()
    return result
