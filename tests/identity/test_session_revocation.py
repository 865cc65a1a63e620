"""Sessions end when they say they end: after logout, after refresh-token reuse revoked the family, after a role is
revoked, the access tokens of that session (or user) are refused at once, not when they expire.

These run the in-process app without a started revocation mirror, so every check asks Redis (the fallback path);
tests/platform/test_revocation_processes.py covers the mirror, the database trigger and two processes."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from models.identity import ApiKey, AuditLog

LOGIN = """mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) { session { accessToken refreshToken } } }"""
REFRESH = "mutation($t: String!) { refreshToken(input: {refreshToken: $t}) { session { accessToken refreshToken } } }"
LOGOUT = "mutation($t: String) { logout(input: {refreshToken: $t}) { ok errors { code } } }"
ME = "{ me { id roles } }"
CREATE_KEY = 'mutation { createApiKey(input: {name: "k"}) { createdApiKey { secret } errors { code } } }'


def reason(result: dict) -> str | None:  # type: ignore[type-arg]
    errors = result.get("errors") or []
    return errors[0]["extensions"].get("reason") if errors else None


async def login(gql, user) -> dict:  # type: ignore[no-untyped-def,type-arg]
    result = await gql(LOGIN, {"email": user.email, "password": user.password})
    assert "errors" not in result, result
    return result["data"]["login"]["session"]


async def test_logout_ends_the_access_token(gql, make_user, session) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    pair = await login(gql, user)
    other = await login(gql, user)  # a second device: another session
    assert (await gql(ME, token=pair["accessToken"]))["data"]["me"]["id"] == str(user.id)
    assert gql.payload(await gql(LOGOUT, {"t": None}, token=pair["accessToken"]), "logout", "ok") is True
    for doc in (ME, CREATE_KEY, LOGOUT):
        result = await gql(doc, {"t": None}, token=pair["accessToken"])
        assert gql.error_code(result) == "UNAUTHENTICATED", result
        assert reason(result) == "SESSION_REVOKED"
    assert gql.error_code(await gql(REFRESH, {"t": pair["refreshToken"]})) == "UNAUTHENTICATED"
    assert (await session.execute(select(func.count()).select_from(ApiKey))).scalar_one() == 0
    # the other session goes on
    assert (await gql(ME, token=other["accessToken"]))["data"]["me"]["id"] == str(user.id)
    assert "errors" not in await gql(REFRESH, {"t": other["refreshToken"]})


async def test_logout_by_refresh_token_ends_that_sessions_access_tokens(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    phone, laptop = await login(gql, user), await login(gql, user)
    logout = await gql(LOGOUT, {"t": phone["refreshToken"]}, token=laptop["accessToken"])
    assert gql.payload(logout, "logout", "ok") is True
    assert gql.error_code(await gql(ME, token=phone["accessToken"])) == "UNAUTHENTICATED"
    assert "errors" not in await gql(ME, token=laptop["accessToken"])


async def test_logout_with_someone_elses_refresh_token_changes_nothing(gql, make_user, session) -> None:  # type: ignore[no-untyped-def]
    alice, mallory = await make_user(), await make_user()
    alice_pair, mallory_pair = await login(gql, alice), await login(gql, mallory)
    audit_before = (await session.execute(select(func.count()).select_from(AuditLog))).scalar_one()
    result = await gql(LOGOUT, {"t": alice_pair["refreshToken"]}, token=mallory_pair["accessToken"])
    assert gql.error_code(result) == "NOT_FOUND", result
    assert result["data"]["logout"] == {"ok": None, "errors": [{"code": "NOT_FOUND"}]}
    assert (await session.execute(select(func.count()).select_from(AuditLog))).scalar_one() == audit_before
    # alice's session is intact, and so is mallory's
    assert "errors" not in await gql(ME, token=alice_pair["accessToken"])
    assert "errors" not in await gql(ME, token=mallory_pair["accessToken"])
    assert "errors" not in await gql(REFRESH, {"t": alice_pair["refreshToken"]})
    # an unknown refresh token is the same answer
    unknown = await gql(LOGOUT, {"t": "rwar_" + uuid.uuid4().hex}, token=mallory_pair["accessToken"])
    assert gql.error_code(unknown) == "NOT_FOUND"


async def test_refresh_reuse_ends_every_access_token_of_the_family(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    first = await login(gql, user)
    second = (await gql(REFRESH, {"t": first["refreshToken"]}))["data"]["refreshToken"]["session"]
    assert "errors" not in await gql(ME, token=second["accessToken"])
    reuse = await gql(REFRESH, {"t": first["refreshToken"]})  # the leaked token comes back
    assert reason(reuse) == "REFRESH_TOKEN_REUSED"
    for token in (first["accessToken"], second["accessToken"]):
        result = await gql(ME, token=token)
        assert gql.error_code(result) == "UNAUTHENTICATED" and reason(result) == "SESSION_REVOKED", result


async def test_revoked_role_ends_the_tokens_that_claim_it(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    admin, issuer = await make_user(roles=["ADMIN"]), await make_user(roles=["INVESTOR", "ISSUER"])
    pair = await login(gql, issuer)
    revoke = await gql(
        "mutation($u: UUID!) { revokeRole(input: {userId: $u, role: ISSUER}) { user { roles } errors { code } } }",
        {"u": str(issuer.id)},
        token=admin.token,
    )
    assert gql.payload(revoke, "revokeRole", "user")["roles"] == ["INVESTOR"], revoke
    for token in (pair["accessToken"], issuer.token):
        assert gql.error_code(await gql(ME, token=token)) == "UNAUTHENTICATED"
    fresh = (await gql(REFRESH, {"t": pair["refreshToken"]}))["data"]["refreshToken"]["session"]
    assert (await gql(ME, token=fresh["accessToken"]))["data"]["me"]["roles"] == ["INVESTOR"]


async def test_revoked_user_is_refused_everywhere_and_nothing_is_written(gql, make_user, services, session) -> None:  # type: ignore[no-untyped-def]
    """What the database trigger does for a disabled or deleted account (core/user_changes.py), here directly."""
    user = await make_user()
    await services.revocations.revoke_user(user.id)
    audit_before = (await session.execute(select(func.count()).select_from(AuditLog))).scalar_one()
    for doc in (
        ME,
        CREATE_KEY,
        LOGOUT,
        'mutation { walletChallenge(input: {address: "0x' + "ab" * 20 + '"}) { challenge { nonce } } }',
        'mutation { createPayment(input: {amount: "10", currency: "USD", method: BANK_TRANSFER, '
        'idempotencyKey: "k1"}) { payment { id } } }',
    ):
        result = await gql(doc, {"t": None}, token=user.token)
        assert gql.error_code(result) == "UNAUTHENTICATED", (doc, result)
    assert (await session.execute(select(func.count()).select_from(AuditLog))).scalar_one() == audit_before
