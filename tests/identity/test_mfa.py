"""MFA through the GraphQL app on real Postgres and Redis: enrolment, the login challenge, replay protection,
recovery codes, the code lockout, disabling, the production staff rule and the audit trail."""

from __future__ import annotations

import time

import pyotp
from sqlalchemy import select

from core.settings import Environment
from models.identity import AuditLog, UserMfa

BEGIN = "mutation { beginMfaEnrolment { enrolment { otpauthUri secret } errors { code field message } } }"
CONFIRM = "mutation($c: String!) { confirmMfaEnrolment(input: {code: $c}) { recoveryCodes errors { code field } } }"
STATUS = "{ mfaStatus { enabled pendingEnrolment recoveryCodesLeft } }"
LOGIN = """mutation($e: String!, $p: String!, $m: String) { login(input: {email: $e, password: $p, mfaCode: $m}) {
  session { accessToken refreshToken mfaRequired mfaChallenge mfaChallengeExpiresAt user { id } } } }"""
COMPLETE = """mutation($ch: String!, $c: String!) {
  completeMfaLogin(input: {challenge: $ch, code: $c}) { session { accessToken } } }"""
DISABLE = "mutation($c: String!) { disableMfa(input: {code: $c}) { ok errors { code field } } }"
REFRESH = "mutation($t: String!) { refreshToken(input: {refreshToken: $t}) { session { accessToken } } }"
REGENERATE = (
    "mutation($c: String!) { regenerateMfaRecoveryCodes(input: {code: $c}) { recoveryCodes errors { code field } } }"
)


def code(secret: str, steps_ahead: int) -> str:
    """The code of the current step +- 1: tests spend -1, 0, +1 in that order, so each is a later step than the
    one before (replay protection refuses anything else)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def reason(result: dict) -> str | None:
    """A top-level error's `extensions.reason` (authentication), else a payload error's code (expected failures)."""
    if result.get("errors"):
        return result["errors"][0]["extensions"].get("reason")
    return next(iter(result["data"].values()))["errors"][0]["code"]


async def enrol(gql, user) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    begun = (await gql(BEGIN, token=user.token))["data"]["beginMfaEnrolment"]["enrolment"]
    confirmed = await gql(CONFIRM, {"c": code(begun["secret"], -1)}, token=user.token)
    return begun["secret"], confirmed["data"]["confirmMfaEnrolment"]["recoveryCodes"]


async def test_enrolment_is_inactive_until_confirmed_and_secret_encrypted(gql, make_user, session):
    user = await make_user()
    begun = (await gql(BEGIN, token=user.token))["data"]["beginMfaEnrolment"]["enrolment"]
    uri, secret = begun["otpauthUri"], begun["secret"]
    parsed = pyotp.parse_uri(uri)
    assert uri.startswith("otpauth://totp/StableRWA:") and parsed.issuer == "StableRWA"
    assert parsed.name == user.email and parsed.secret == secret and parsed.digits == 6 and parsed.interval == 30
    assert "algorithm=SHA1" in uri
    row = (await session.execute(select(UserMfa).where(UserMfa.user_id == user.id))).scalar_one()
    assert secret.encode() not in row.secret_enc and row.confirmed_at is None
    assert (await gql(STATUS, token=user.token))["data"]["mfaStatus"] == {
        "enabled": False,
        "pendingEnrolment": True,
        "recoveryCodesLeft": 0,
    }
    # pending: login still answers with a session
    login = (await gql(LOGIN, {"e": user.email, "p": user.password}))["data"]["login"]["session"]
    assert login["accessToken"] and login["mfaRequired"] is False
    wrong = await gql(CONFIRM, {"c": "000000" if code(secret, 0) != "000000" else "111111"}, token=user.token)
    assert gql.error_code(wrong) == "MFA_CODE_INVALID" and wrong["data"]["confirmMfaEnrolment"]["recoveryCodes"] is None
    assert wrong["data"]["confirmMfaEnrolment"]["errors"][0]["field"] == ["input", "code"]
    codes = (await gql(CONFIRM, {"c": code(secret, 0)}, token=user.token))["data"]["confirmMfaEnrolment"]
    assert len(codes["recoveryCodes"]) == 10 and len(set(codes["recoveryCodes"])) == 10
    assert (await gql(STATUS, token=user.token))["data"]["mfaStatus"] == {
        "enabled": True,
        "pendingEnrolment": False,
        "recoveryCodesLeft": 10,
    }
    again = await gql(BEGIN, token=user.token)
    assert gql.error_code(again) == "MFA_ALREADY_ENABLED" and again["data"]["beginMfaEnrolment"]["enrolment"] is None
    # recovery codes are stored hashed
    await session.refresh(row)
    assert not any(
        c in row.recovery_code_hashes or c.replace("-", "") in row.recovery_code_hashes for c in codes["recoveryCodes"]
    )


async def test_login_requires_a_code_and_challenge_is_single_use(gql, make_user, services):
    user = await make_user()
    secret, _ = await enrol(gql, user)
    login = (await gql(LOGIN, {"e": user.email, "p": user.password}))["data"]["login"]["session"]
    assert login["mfaRequired"] is True and login["accessToken"] is None and login["refreshToken"] is None
    assert login["user"] is None and login["mfaChallenge"]
    ttl = await services.redis.ttl(
        services.keys("mfa", "challenge", __import__("hashlib").sha256(login["mfaChallenge"].encode()).hexdigest())
    )
    assert 0 < ttl <= 300
    bad = await gql(COMPLETE, {"ch": login["mfaChallenge"], "c": "12345"})
    assert gql.error_code(bad) == "UNAUTHENTICATED" and reason(bad) == "MFA_CODE_INVALID"
    done = (await gql(COMPLETE, {"ch": login["mfaChallenge"], "c": code(secret, 0)}))["data"]["completeMfaLogin"][
        "session"
    ]
    me = await gql("{ me { email } }", token=done["accessToken"])
    assert me["data"]["me"]["email"] == user.email
    reused = await gql(COMPLETE, {"ch": login["mfaChallenge"], "c": code(secret, 1)})
    assert gql.error_code(reused) == "UNAUTHENTICATED" and reason(reused) == "MFA_CHALLENGE_INVALID"
    unknown = await gql(COMPLETE, {"ch": "rwamfa_forged", "c": code(secret, 1)})
    assert reason(unknown) == "MFA_CHALLENGE_INVALID"


async def test_one_step_login_and_replayed_code_refused(gql, make_user):
    user = await make_user()
    secret, _ = await enrol(gql, user)
    used = code(secret, 0)
    one = (await gql(LOGIN, {"e": user.email, "p": user.password, "m": used}))["data"]["login"]["session"]
    assert one["accessToken"] and one["mfaRequired"] is False
    replay = await gql(LOGIN, {"e": user.email, "p": user.password, "m": used})
    assert gql.error_code(replay) == "UNAUTHENTICATED" and reason(replay) == "MFA_CODE_INVALID"
    # through the challenge too
    challenge = (await gql(LOGIN, {"e": user.email, "p": user.password}))["data"]["login"]["session"]["mfaChallenge"]
    assert reason(await gql(COMPLETE, {"ch": challenge, "c": used})) == "MFA_CODE_INVALID"
    # an older step than the last accepted one is a replay as well
    assert reason(await gql(COMPLETE, {"ch": challenge, "c": code(secret, -1)})) == "MFA_CODE_INVALID"
    assert (await gql(COMPLETE, {"ch": challenge, "c": code(secret, 1)}))["data"]["completeMfaLogin"]["session"][
        "accessToken"
    ]


async def test_wrong_codes_counted_then_locked(gql, make_user, settings, session):
    user = await make_user()
    secret, _ = await enrol(gql, user)
    challenge = (await gql(LOGIN, {"e": user.email, "p": user.password}))["data"]["login"]["session"]["mfaChallenge"]
    good = code(secret, 0)
    wrong = [c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c != good]
    for i in range(settings.login_failures_before_lock):
        res = await gql(COMPLETE, {"ch": challenge, "c": wrong[i]})
        assert gql.error_code(res) == "UNAUTHENTICATED", res
    row = (await session.execute(select(UserMfa).where(UserMfa.user_id == user.id))).scalar_one()
    assert row.failed_attempts == settings.login_failures_before_lock and row.locked_until is not None
    locked = await gql(COMPLETE, {"ch": challenge, "c": good})
    assert gql.error_code(locked) == "RATE_LIMITED" and locked["errors"][0]["extensions"]["retryAfter"] > 0
    # the lock holds on the one-step path and for a fresh challenge too
    assert gql.error_code(await gql(LOGIN, {"e": user.email, "p": user.password, "m": good})) == "RATE_LIMITED"
    fresh = (await gql(LOGIN, {"e": user.email, "p": user.password}))["data"]["login"]["session"]["mfaChallenge"]
    assert gql.error_code(await gql(COMPLETE, {"ch": fresh, "c": good})) == "RATE_LIMITED"


async def test_code_attempts_rate_limited_per_account(gql, make_user, settings):
    settings.login_failures_before_lock = 1000  # isolate the Redis limit from the lock
    user = await make_user()
    await enrol(gql, user)
    challenge = (await gql(LOGIN, {"e": user.email, "p": user.password}))["data"]["login"]["session"]["mfaChallenge"]
    # the account's budget per minute is shared by every code attempt: enrolment's confirmation spent one
    budget = settings.login_rate_per_minute - 1
    codes = [gql.error_code(await gql(COMPLETE, {"ch": challenge, "c": "abcdef"})) for _ in range(budget + 1)]
    assert codes[:-1] == ["UNAUTHENTICATED"] * budget and codes[-1] == "RATE_LIMITED"


async def test_recovery_code_works_once(gql, make_user):
    user = await make_user()
    _, recovery = await enrol(gql, user)
    challenge = (await gql(LOGIN, {"e": user.email, "p": user.password}))["data"]["login"]["session"]["mfaChallenge"]
    done = await gql(COMPLETE, {"ch": challenge, "c": recovery[0].lower()})
    assert done["data"]["completeMfaLogin"]["session"]["accessToken"]
    token = done["data"]["completeMfaLogin"]["session"]["accessToken"]
    assert (await gql(STATUS, token=token))["data"]["mfaStatus"]["recoveryCodesLeft"] == 9
    again = await gql(LOGIN, {"e": user.email, "p": user.password, "m": recovery[0]})
    assert gql.error_code(again) == "UNAUTHENTICATED" and reason(again) == "MFA_CODE_INVALID"
    assert (await gql(LOGIN, {"e": user.email, "p": user.password, "m": recovery[1]}))["data"]["login"]["session"][
        "accessToken"
    ]


async def test_regenerate_and_disable_need_a_code(gql, make_user):
    user = await make_user()
    secret, recovery = await enrol(gql, user)
    assert gql.error_code(await gql(REGENERATE, {"c": "not-a-code"}, token=user.token)) == "MFA_CODE_INVALID"
    fresh = (await gql(REGENERATE, {"c": code(secret, 0)}, token=user.token))["data"]
    new_codes = fresh["regenerateMfaRecoveryCodes"]["recoveryCodes"]
    assert len(new_codes) == 10 and not set(new_codes) & set(recovery)
    old = await gql(LOGIN, {"e": user.email, "p": user.password, "m": recovery[2]})
    assert reason(old) == "MFA_CODE_INVALID"
    refused = await gql(DISABLE, {"c": "000000"}, token=user.token)
    assert gql.error_code(refused) == "MFA_CODE_INVALID" and refused["data"]["disableMfa"]["ok"] is None
    assert (await gql(STATUS, token=user.token))["data"]["mfaStatus"]["enabled"] is True
    assert (await gql(DISABLE, {"c": code(secret, 1)}, token=user.token))["data"]["disableMfa"]["ok"] is True
    login = (await gql(LOGIN, {"e": user.email, "p": user.password}))["data"]["login"]["session"]
    assert login["accessToken"] and login["mfaRequired"] is False
    assert gql.error_code(await gql(DISABLE, {"c": code(secret, 1)}, token=user.token)) == "MFA_NOT_ENABLED"


async def test_production_requires_mfa_for_staff(gql, make_user, settings, monkeypatch):
    monkeypatch.setattr(settings, "env", Environment.PRODUCTION)
    admin = await make_user(roles=["INVESTOR", "ADMIN"])
    refused = await gql(LOGIN, {"e": admin.email, "p": admin.password})
    assert gql.error_code(refused) == "FORBIDDEN" and reason(refused) == "MFA_ENROLMENT_REQUIRED"
    assert "mfa-enrol" in refused["errors"][0]["message"]
    compliance = await make_user(roles=["COMPLIANCE"])
    assert reason(await gql(LOGIN, {"e": compliance.email, "p": compliance.password})) == "MFA_ENROLMENT_REQUIRED"
    investor = await make_user()
    assert (await gql(LOGIN, {"e": investor.email, "p": investor.password}))["data"]["login"]["session"]["accessToken"]
    # a wrong password is still just a wrong password (the rule does not reveal the account's roles)
    wrong = await gql(LOGIN, {"e": admin.email, "p": "wrong-password-1"})
    assert gql.error_code(wrong) == "UNAUTHENTICATED"
    secret, _ = await enrol(gql, admin)
    ok = (await gql(LOGIN, {"e": admin.email, "p": admin.password, "m": code(secret, 0)}))["data"]["login"]["session"]
    assert ok["accessToken"]
    no_disable = await gql(DISABLE, {"c": code(secret, 1)}, token=admin.token)
    assert gql.error_code(no_disable) == "FORBIDDEN" and reason(no_disable) == "MFA_REQUIRED_FOR_ROLE"
    settings.mfa_required_roles = "ADMIN"
    assert (await gql(LOGIN, {"e": compliance.email, "p": compliance.password}))["data"]["login"]["session"][
        "accessToken"
    ]


async def test_production_session_cannot_refresh_into_staff_without_mfa(gql, make_user, settings, monkeypatch):
    """An investor's session (no MFA needed) made ADMIN later: its refresh must not issue an ADMIN token."""
    monkeypatch.setattr(settings, "env", Environment.PRODUCTION)
    admin_secret_user = await make_user(roles=["ADMIN"])
    secret, _ = await enrol(gql, admin_secret_user)
    investor = await make_user()
    pair = (await gql(LOGIN, {"e": investor.email, "p": investor.password}))["data"]["login"]["session"]
    admin = (await gql(LOGIN, {"e": admin_secret_user.email, "p": admin_secret_user.password, "m": code(secret, 0)}))[
        "data"
    ]["login"]["session"]
    granted = await gql(
        "mutation($u: UUID!) { grantRole(input: {userId: $u, role: ADMIN}) { user { roles } errors { code } } }",
        {"u": str(investor.id)},
        token=admin["accessToken"],
    )
    assert "ADMIN" in gql.payload(granted, "grantRole", "user")["roles"]
    refreshed = await gql(REFRESH, {"t": pair["refreshToken"]})
    assert gql.error_code(refreshed) == "FORBIDDEN" and reason(refreshed) == "MFA_ENROLMENT_REQUIRED"
    # with MFA enrolled the session refreshes again (the refused attempt did not spend the token)
    secret2, _ = await enrol(gql, investor)
    again = await gql(REFRESH, {"t": pair["refreshToken"]})
    assert again["data"]["refreshToken"]["session"]["accessToken"], again


async def test_every_step_audited(gql, make_user, session):
    user = await make_user()
    secret, recovery = await enrol(gql, user)
    challenge = (await gql(LOGIN, {"e": user.email, "p": user.password}))["data"]["login"]["session"]["mfaChallenge"]
    await gql(COMPLETE, {"ch": challenge, "c": code(secret, 0)})
    await gql(REGENERATE, {"c": code(secret, 1)}, token=user.token)
    refused = await gql(REGENERATE, {"c": "x"}, token=user.token)  # a wrong code is audited too
    assert gql.error_code(refused) == "MFA_CODE_INVALID"
    new = (await gql(LOGIN, {"e": user.email, "p": user.password}))["data"]["login"]["session"]["mfaChallenge"]
    assert new
    rows = (
        await session.execute(
            select(AuditLog.action, AuditLog.details).where(AuditLog.actor_id == user.id).order_by(AuditLog.id)
        )
    ).all()
    assert [r[0] for r in rows] == [
        "mfa.enrolment_begin",
        "mfa.enrolment_confirm",
        "user.login_mfa_challenge",
        "user.login",
        "mfa.recovery_codes_regenerate",
        "mfa.code_rejected",
        "user.login_mfa_challenge",
    ]
    assert rows[3][1] == {"mfa": "totp"} and rows[5][1] == {"failures": 1, "locked": False}
    assert not any(c in str(r[1]) for r in rows for c in recovery + [secret])


async def test_guessing_challenges_is_rate_limited_per_address(gql, settings):
    budget = settings.login_rate_per_minute * 3
    codes = [gql.error_code(await gql(COMPLETE, {"ch": f"rwamfa_guess{i}", "c": "123456"})) for i in range(budget + 1)]
    assert codes[:-1] == ["UNAUTHENTICATED"] * budget and codes[-1] == "RATE_LIMITED"
