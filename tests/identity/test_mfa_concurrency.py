"""One MFA code sent at once on several requests, on separate connections (committed data): the factor's row lock
serialises the attempts, so a TOTP code, a recovery code or a challenge opens exactly one session."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pyotp
from sqlalchemy import func, select

from core.encryption import FieldCipher, parse_key
from core.jwt_keys import KeyRing
from core.passwords import hash_password
from core.redis import create_redis
from core.services import Services
from models.identity import RefreshTokenFamily, User
from server.app import create_app
from tests.fixtures.app import make_settings
from tests.identity.test_mfa import BEGIN, COMPLETE, CONFIRM, LOGIN, reason
from tests.trading.live import committed_sessions

PASSWORD = "correct-horse-9-battery"


async def test_concurrent_uses_of_one_code_open_one_session(module_database_url, redis_url, redis_prefix, tmp_path):  # type: ignore[no-untyped-def]
    settings = make_settings(module_database_url, redis_url, redis_prefix, tmp_path / "data")
    async with committed_sessions(module_database_url) as sf:
        services = Services(
            settings=settings,
            session_factory=sf,
            redis=create_redis(redis_url),
            keyring=KeyRing.from_settings(settings),
            cipher=FieldCipher(parse_key(settings.kyc_encryption_key.get_secret_value())),
        )  # type: ignore[union-attr]
        user_id, email = uuid.uuid4(), f"mfa-{uuid.uuid4().hex[:8]}@example.com"
        async with sf() as s:
            s.add(User(id=user_id, email=email, password_hash=hash_password(PASSWORD), roles=["INVESTOR"]))
            await s.commit()
        token, _ = services.keyring.issue(user_id, ["INVESTOR"])
        app = create_app(settings, services)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

                async def gql(query: str, variables: dict | None = None, auth: str | None = None) -> dict:  # type: ignore[type-arg]
                    headers = {"Authorization": f"Bearer {auth}"} if auth else {}
                    resp = await client.post(
                        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
                    )
                    assert resp.status_code == 200, resp.text
                    return resp.json()

                def opened(results: list[dict], field: str) -> int:  # type: ignore[type-arg]
                    return sum(
                        1
                        for r in results
                        if (((r.get("data") or {}).get(field) or {}).get("session") or {}).get("accessToken")
                    )

                secret = (await gql(BEGIN, auth=token))["data"]["beginMfaEnrolment"]["enrolment"]["secret"]
                totp = pyotp.TOTP(secret)
                recovery = (await gql(CONFIRM, {"c": totp.at(time.time() - 30)}, auth=token))["data"][
                    "confirmMfaEnrolment"
                ]["recoveryCodes"]

                same = totp.at(time.time())
                results = await asyncio.gather(*[gql(LOGIN, {"e": email, "p": PASSWORD, "m": same}) for _ in range(4)])
                assert opened(results, "login") == 1, results
                assert {reason(r) for r in results if r.get("errors")} == {"MFA_CODE_INVALID"}

                challenges = [
                    (await gql(LOGIN, {"e": email, "p": PASSWORD}))["data"]["login"]["session"]["mfaChallenge"]
                    for _ in range(3)
                ]
                results = await asyncio.gather(*[gql(COMPLETE, {"ch": ch, "c": recovery[0]}) for ch in challenges])
                assert opened(results, "completeMfaLogin") == 1, results

                challenge = (await gql(LOGIN, {"e": email, "p": PASSWORD}))["data"]["login"]["session"]["mfaChallenge"]
                results = await asyncio.gather(*[gql(COMPLETE, {"ch": challenge, "c": c}) for c in recovery[1:4]])
                assert opened(results, "completeMfaLogin") == 1, results
            async with sf() as s:
                sessions = (
                    await s.execute(
                        select(func.count())
                        .select_from(RefreshTokenFamily)
                        .where(RefreshTokenFamily.user_id == user_id)
                    )
                ).scalar_one()
            assert sessions == 3
        finally:
            await services.redis.aclose()
