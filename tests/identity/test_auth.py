"""Register, login, refresh rotation with reuse detection, logout, and the error codes around them."""

from __future__ import annotations

from sqlalchemy import func, select

from models.identity import AuditLog

REGISTER = """mutation($email: String!, $password: String!) {
  register(input: {email: $email, password: $password}) {
    session { accessToken refreshToken user { id email roles } } errors { code field message } } }"""
LOGIN = """mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) { session { accessToken refreshToken } errors { code } } }"""
REFRESH = """mutation($t: String!) {
  refreshToken(input: {refreshToken: $t}) { session { accessToken refreshToken } errors { code } } }"""
ME = "{ me { id email roles } }"


async def test_register_login_me(gql, session):
    reg = await gql(REGISTER, {"email": "Alice@Example.com", "password": "s3cure-passphrase"})
    registered = gql.payload(reg, "register", "session")
    assert registered["user"]["email"] == "alice@example.com"
    assert registered["user"]["roles"] == ["INVESTOR"]
    login = await gql(LOGIN, {"email": "alice@example.com", "password": "s3cure-passphrase"})
    token = gql.payload(login, "login", "session")["accessToken"]
    me = await gql(ME, token=token)
    assert me["data"]["me"]["email"] == "alice@example.com"
    actions = (await session.execute(select(AuditLog.action).order_by(AuditLog.id))).scalars().all()
    assert actions == ["user.register", "user.login"]


async def test_duplicate_email_conflicts_and_changes_nothing(gql, session):
    await gql(REGISTER, {"email": "bob@example.com", "password": "s3cure-passphrase"})
    again = await gql(REGISTER, {"email": "BOB@example.com", "password": "other-passphrase-1"})
    assert gql.error_code(again) == "CONFLICT"
    # a taken email is an expected failure: data, on the input field, with no session
    assert "errors" not in again
    assert again["data"]["register"]["session"] is None
    assert again["data"]["register"]["errors"][0]["field"] == ["input", "email"]
    login = await gql(LOGIN, {"email": "bob@example.com", "password": "s3cure-passphrase"})
    assert login["data"]["login"]["session"]["accessToken"]


async def test_bad_input_is_typed(gql):
    bad_email = await gql(REGISTER, {"email": "not-an-email", "password": "s3cure-passphrase"})
    assert gql.error_code(bad_email) == "BAD_USER_INPUT"
    assert bad_email["data"]["register"]["errors"][0]["field"] == ["input", "email"]
    short = await gql(REGISTER, {"email": "c@example.com", "password": "short"})
    assert gql.error_code(short) == "BAD_USER_INPUT"
    assert short["data"]["register"]["errors"][0]["field"] == ["input", "password"]
    assert gql.error_code(await gql(ME, token="garbage.token.here")) == "UNAUTHENTICATED"
    assert gql.error_code(await gql("{ me { nope } }")) == "BAD_USER_INPUT"


async def test_wrong_password_then_lockout(gql, make_user):
    user = await make_user()
    for _ in range(5):
        wrong = await gql(LOGIN, {"email": user.email, "password": "wrong-password-1"})
        # authentication stays a top-level error, not payload data
        assert wrong["data"] is None and wrong["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    locked = await gql(LOGIN, {"email": user.email, "password": user.password})
    assert locked["data"] is None and gql.error_code(locked) == "RATE_LIMITED"
    assert locked["errors"][0]["extensions"]["retryAfter"] > 0


async def test_login_rate_limited_per_account(gql, make_user, settings):
    user = await make_user()
    codes = [
        gql.error_code(await gql(LOGIN, {"email": user.email, "password": user.password}))
        for _ in range(settings.login_rate_per_minute + 1)
    ]
    assert codes[:-1] == [None] * settings.login_rate_per_minute
    assert codes[-1] == "RATE_LIMITED"


async def test_refresh_rotates_and_reuse_revokes_family(gql, make_user):
    user = await make_user()
    first = (await gql(LOGIN, {"email": user.email, "password": user.password}))["data"]["login"]["session"]
    second = gql.payload(await gql(REFRESH, {"t": first["refreshToken"]}), "refreshToken", "session")
    assert second["refreshToken"] != first["refreshToken"]
    reuse = await gql(REFRESH, {"t": first["refreshToken"]})
    assert gql.error_code(reuse) == "UNAUTHENTICATED"
    assert reuse["errors"][0]["extensions"]["reason"] == "REFRESH_TOKEN_REUSED"
    # the legitimate successor is dead too: the whole family was revoked
    assert gql.error_code(await gql(REFRESH, {"t": second["refreshToken"]})) == "UNAUTHENTICATED"


async def test_logout_revokes_refresh(gql, make_user):
    user = await make_user()
    pair = (await gql(LOGIN, {"email": user.email, "password": user.password}))["data"]["login"]["session"]
    out = await gql(
        "mutation($t: String) { logout(input: {refreshToken: $t}) { ok errors { code } } }",
        {"t": pair["refreshToken"]},
        token=pair["accessToken"],
    )
    assert gql.payload(out, "logout", "ok") is True
    assert gql.error_code(await gql(REFRESH, {"t": pair["refreshToken"]})) == "UNAUTHENTICATED"


async def test_audit_log_refuses_update_and_delete(session, gql):
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    await gql(REGISTER, {"email": "dora@example.com", "password": "s3cure-passphrase"})
    assert (await session.execute(select(func.count()).select_from(AuditLog))).scalar_one() == 1
    for stmt in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with session.begin_nested():
                await session.execute(text(stmt))


async def test_node_returns_a_user_to_themself_and_staff_only(gql, make_user):
    user, other = await make_user(), await make_user()
    compliance, admin = await make_user(roles=["COMPLIANCE"]), await make_user(roles=["ADMIN"])
    query = "query($id: ID!) { node(id: $id) { __typename id ... on User { email status } } }"
    expected = {"__typename": "User", "id": str(user.id), "email": user.email, "status": "ACTIVE"}
    for viewer in (user, compliance, admin):
        assert (await gql(query, {"id": str(user.id)}, token=viewer.token))["data"]["node"] == expected
    assert (await gql(query, {"id": str(user.id)}, token=other.token))["data"]["node"] is None
    assert (await gql(query, {"id": str(user.id)}))["data"]["node"] is None
