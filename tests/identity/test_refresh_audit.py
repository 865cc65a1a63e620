"""refreshToken writes its audit row like every other mutation: a rotation, and a reused (leaked) token that
revoked its login."""

from __future__ import annotations

from sqlalchemy import select

from models.identity import AuditLog

LOGIN = "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { session { refreshToken } } }"
REFRESH = "mutation($t: String!) { refreshToken(input: {refreshToken: $t}) { session { refreshToken } } }"


async def test_refresh_and_reuse_are_audited(gql, make_user, session) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    first = (await gql(LOGIN, {"e": user.email, "p": user.password}))["data"]["login"]["session"]["refreshToken"]
    assert (await gql(REFRESH, {"t": first}))["data"]["refreshToken"]["session"]["refreshToken"]
    assert gql.error_code(await gql(REFRESH, {"t": first})) == "UNAUTHENTICATED"  # reuse
    assert gql.error_code(await gql(REFRESH, {"t": "rwar_not-a-token"})) == "UNAUTHENTICATED"
    rows = (
        (await session.execute(select(AuditLog).where(AuditLog.actor_id == user.id).order_by(AuditLog.id)))
        .scalars()
        .all()
    )
    actions = [r.action for r in rows]
    assert actions == ["user.login", "user.refresh_token", "user.refresh_token_reused"], actions
    refreshed, reused = rows[1], rows[2]
    assert refreshed.target_type == reused.target_type == "session"
    assert refreshed.target_id == reused.target_id is not None  # the same login
    assert refreshed.request_id and reused.request_id
