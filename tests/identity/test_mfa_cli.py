"""`rwa user mfa-enrol` as an operator runs it (a subprocess on a database of its own): the way ADMIN and
COMPLIANCE accounts get MFA in production, where they cannot sign in without it."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import httpx
import pyotp

from core.services import build_services
from core.settings import Environment, Settings
from server.app import create_app
from tests.fixtures.app import TEST_JWT_KEY
from tests.platform.test_cli import PASSWORD, assert_clean_failure, create_database, drop_database, rwa

LOGIN = """mutation($e: String!, $p: String!, $m: String) { login(input: {email: $e, password: $p, mfaCode: $m}) {
  session { accessToken mfaRequired } } }"""


async def test_mfa_enrol_from_the_cli_then_sign_in(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    db = await create_database(database_url, migrated=True)
    key = os.urandom(32).hex()
    try:

        def run(*args: str):  # type: ignore[no-untyped-def]
            return rwa(*args, database_url=db, redis_url=redis_url, tmp_path=tmp_path, KYC_ENCRYPTION_KEY=key)

        email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
        assert run("user", "create-admin", "--email", email, "--password", PASSWORD).returncode == 0
        assert_clean_failure(run("user", "mfa-enrol", "--email", "nobody@example.com"))
        assert_clean_failure(run("user", "mfa-enrol", "--email", email, "--code", "123456"))  # nothing pending

        begun = run("user", "mfa-enrol", "--email", email)  # no terminal: the enrolment stays pending
        assert begun.returncode == 0, begun.stderr
        uri = re.search(r"otpauth://\S+", begun.stdout).group(0)  # type: ignore[union-attr]
        secret = pyotp.parse_uri(uri).secret
        assert pyotp.parse_uri(uri).issuer == "StableRWA" and "--code" in begun.stderr
        totp = pyotp.TOTP(secret)
        assert_clean_failure(run("user", "mfa-enrol", "--email", email, "--code", "abcdef"))
        # the current step's code stays valid one step later: a slow CLI start cannot make it stale (a code from the
        # step before was refused when the subprocess started just after a step boundary)
        done = run("user", "mfa-enrol", "--email", email, "--code", totp.now())
        assert done.returncode == 0, done.stderr
        recovery = [line for line in done.stdout.splitlines() if re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", line)]
        assert len(recovery) == 10

        settings = Settings(
            RWA_ENV=Environment.TEST,
            DATABASE_URL=db,
            REDIS_URL=redis_url,  # type: ignore[call-arg]
            RWA_REDIS_PREFIX=redis_prefix,
            RWA_DATA_DIR=str(tmp_path / "app"),
            JWT_PRIVATE_KEY=TEST_JWT_KEY,
            KYC_ENCRYPTION_KEY=key,
            LOG_JSON=False,
        )
        services = build_services(settings)
        try:
            app = create_app(settings, services)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:

                async def login(code: str | None) -> dict:  # type: ignore[type-arg]
                    body = {"query": LOGIN, "variables": {"e": email, "p": PASSWORD, "m": code}}
                    return (await client.post("/graphql", json=body)).json()

                assert (await login(None))["data"]["login"]["session"] == {"accessToken": None, "mfaRequired": True}
                # the next step's code (accepted for clock drift): the enrolment used this step's, and a step is
                # never accepted twice
                assert (await login(totp.at(time.time() + 30)))["data"]["login"]["session"]["accessToken"]
                assert (await login(recovery[0]))["data"]["login"]["session"]["accessToken"]
        finally:
            await services.aclose()
    finally:
        await drop_database(db)
