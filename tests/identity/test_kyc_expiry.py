"""Lapsed KYC approvals are written EXPIRED by the periodic job (resolvers.identity.kyc.expire_lapsed), with an
audit row each; nothing else changes; a second pass finds nothing. The worker schedules it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from models.identity import AuditLog, KycCase, KycStatus
from resolvers.identity.kyc import expire_lapsed

NOW = datetime(2031, 6, 1, tzinfo=UTC)


async def test_lapsed_approvals_become_expired_with_audit_rows(session, make_user):  # type: ignore[no-untyped-def]
    cases: dict[str, tuple[KycStatus, datetime | None]] = {
        "lapsed_long_ago": (KycStatus.APPROVED, NOW - timedelta(days=400)),
        "lapsed_just_now": (KycStatus.APPROVED, NOW),
        "lapsed_third": (KycStatus.APPROVED, NOW - timedelta(seconds=1)),
        "still_valid": (KycStatus.APPROVED, NOW + timedelta(seconds=1)),
        "suspended": (KycStatus.SUSPENDED, NOW - timedelta(days=1)),
        "expired_by_hand": (KycStatus.EXPIRED, NOW - timedelta(days=2)),
        "pending": (KycStatus.PENDING_REVIEW, None),
    }
    ids = {}
    for name, (status, expires_at) in cases.items():
        user = await make_user()
        ids[name] = uuid.uuid4()
        session.add(KycCase(id=ids[name], user_id=user.id, status=status, expires_at=expires_at))
    await session.commit()

    assert await expire_lapsed(session, NOW, batch=2) >= 3  # batches of 2; other tests' lapsed cases go too
    rows = {
        c.id: c
        for c in (
            await session.execute(
                select(KycCase).where(KycCase.id.in_(ids.values())).execution_options(populate_existing=True)
            )
        ).scalars()
    }
    got = {name: (rows[i].status, rows[i].expires_at) for name, i in ids.items()}
    assert got == {
        **cases,
        **{n: (KycStatus.EXPIRED, cases[n][1]) for n in ("lapsed_long_ago", "lapsed_just_now", "lapsed_third")},
    }
    audit = (
        (
            await session.execute(
                select(AuditLog).where(
                    AuditLog.action == "kyc.expire", AuditLog.target_id.in_([str(i) for i in ids.values()])
                )
            )
        )
        .scalars()
        .all()
    )
    assert sorted(a.target_id for a in audit) == sorted(  # type: ignore[type-var]
        str(ids[n]) for n in ("lapsed_long_ago", "lapsed_just_now", "lapsed_third")
    )
    assert all(
        a.actor_id is None
        and a.target_type == "kyc_case"
        and a.details == {"from": "APPROVED", "to": "EXPIRED", "reason": "APPROVAL_LAPSED"}
        for a in audit
    )
    assert await expire_lapsed(session, NOW) == 0  # idempotent


def test_the_worker_schedules_the_expiry() -> None:
    import jobs.actors

    [job] = [j for j in jobs.actors.build_scheduler().jobs if j.actor_name == "expire_kyc_approvals"]
    assert job.interval_s <= 600
    assert jobs.actors.broker.broker.get_actor("expire_kyc_approvals").queue_name == "identity"
