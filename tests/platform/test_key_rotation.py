"""Key rotation without downtime: `rwa kyc rekey` re-encrypts personal data (KYC cases, MFA secrets) under a new
KYC key while an API process keeps reading both keys, and the JWT signing key rotates in three phases with
`rwa keys jwt-new` (docs/runbooks/rotate-kyc-key.md, rotate-jwt-key.md)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from core.data_keys import wrap_aad
from core.db import create_engine
from core.encryption import FieldCipher, key_id
from core.errors import Unauthenticated
from core.jwt_keys import KeyRing, generate_private_key_pem, public_key_pem
from core.services import build_services
from core.settings import Environment, Settings
from server.app import create_app
from tests.fixtures.app import TEST_JWT_KEY
from tests.platform.test_cli import create_database, drop_database

RWA = str(Path(sys.executable).with_name("rwa"))
PASSWORD = "correct-horse-battery-9"
PERSONAL = {
    "fullName": "Ada Quagmire",
    "dateOfBirth": "1984-02-29",
    "country": "de",
    "documentType": "PASSPORT",
    "documentNumber": "C01X00T47",
    "address": "Lindenstrasse 7, 10969 Berlin",
}
SUBMIT = "mutation($input: KycInput!) { submitKyc(input: $input) { kycCase { id status } errors { code } } }"
MY_KYC = "{ myKyc { id details { fullName documentNumber } } }"


def run_rwa(*args: str, db: str, redis_url: str, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    full = {
        **os.environ,
        "DATABASE_URL": db,
        "REDIS_URL": redis_url,
        "RWA_ENV": "test",
        "LOG_JSON": "false",
        "RWA_DATA_DIR": str(tmp_path / "data"),
        **env,
    }
    if "KYC_RETIRED_ENCRYPTION_KEYS" not in env:
        full.pop("KYC_RETIRED_ENCRYPTION_KEYS", None)
    return subprocess.Popen(
        [RWA, *args],
        env=full,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, errors = proc.communicate(timeout=120)
    return proc.returncode, " ".join((out + errors).split())  # rich wraps long lines


@asynccontextmanager
async def api(db: str, redis_url: str, redis_prefix: str, tmp_path: Path, key: str, retired: str = ""):  # type: ignore[no-untyped-def]
    settings = Settings(
        RWA_ENV=Environment.TEST,
        DATABASE_URL=db,
        REDIS_URL=redis_url,  # type: ignore[call-arg]
        RWA_REDIS_PREFIX=redis_prefix,
        RWA_DATA_DIR=str(tmp_path / "app"),
        JWT_PRIVATE_KEY=TEST_JWT_KEY,
        KYC_ENCRYPTION_KEY=key,
        KYC_RETIRED_ENCRYPTION_KEYS=retired or None,
        LOG_JSON=False,
    )
    services = build_services(settings)
    try:
        app = create_app(settings, services)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:

            async def gql(query: str, variables: dict | None = None, token: str | None = None) -> dict:  # type: ignore[type-arg]
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                resp = await client.post(
                    "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
                )
                return resp.json()

            yield gql, services
    finally:
        await services.aclose()


async def sign_up(gql) -> str:  # type: ignore[no-untyped-def]
    email = f"kyc-{uuid.uuid4().hex[:10]}@example.com"
    r = await gql(
        "mutation($e: String!, $p: String!) { register(input: {email: $e, password: $p}) { session { user { id } } } }",
        {"e": email, "p": PASSWORD},
    )
    assert "errors" not in r and r["data"]["register"]["session"], r
    r = await gql(
        "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { session { accessToken } } }",
        {"e": email, "p": PASSWORD},
    )
    return r["data"]["login"]["session"]["accessToken"]


async def headers(db: str) -> dict[str, set[bytes]]:
    """The (version byte + key id) of every stored ciphertext, per column."""
    engine = create_engine(db, pool_size=1)
    try:
        async with engine.connect() as conn:
            kyc = (
                await conn.execute(text("SELECT wrapped_key FROM user_data_keys WHERE wrapped_key IS NOT NULL"))
            ).scalars()  # personal data is under per-user data keys, wrapped by the KYC key
            kyc_heads = {bytes(b)[:9] for b in kyc}
            mfa = (await conn.execute(text("SELECT secret_enc FROM user_mfa"))).scalars()
            return {"kyc": kyc_heads, "mfa": {bytes(b)[:9] for b in mfa}}
    finally:
        await engine.dispose()


async def test_kyc_key_rotation_online(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    old, new = os.urandom(32).hex(), os.urandom(32).hex()
    db = await create_database(database_url, migrated=True)
    try:
        # before the rotation: three KYC cases and one MFA secret under the old key, one of them in the v1 layout
        tokens = []
        async with api(db, redis_url, redis_prefix, tmp_path, old) as (gql, services):
            for _ in range(3):
                token = await sign_up(gql)
                submitted = (await gql(SUBMIT, {"input": PERSONAL}, token))["data"]["submitKyc"]
                assert submitted["kycCase"]["status"] == "PENDING_REVIEW", submitted
                tokens.append(token)
            begun = await gql("mutation { beginMfaEnrolment { enrolment { secret } } }", token=tokens[0])
            assert "errors" not in begun and begun["data"]["beginMfaEnrolment"]["enrolment"], begun
            async with services.session_factory() as session:  # a row written before key ids existed (v1)
                row = (await session.execute(text("SELECT user_id, wrapped_key FROM user_data_keys LIMIT 1"))).one()
                plain = services.cipher.decrypt(bytes(row.wrapped_key), wrap_aad(row.user_id))
                nonce = os.urandom(12)
                from cryptography.hazmat.primitives.ciphers.aead import AESGCM

                v1 = b"\x01" + nonce + AESGCM(bytes.fromhex(old)).encrypt(nonce, plain, wrap_aad(row.user_id))
                await session.execute(
                    text("UPDATE user_data_keys SET wrapped_key = :b WHERE user_id = :id"), {"b": v1, "id": row.user_id}
                )
                await session.commit()

        # a process with the new key only cannot read the old rows: this is why the old key stays (retired)
        async with api(db, redis_url, redis_prefix, tmp_path, new) as (gql, _):
            r = await gql(MY_KYC, token=tokens[1])
            assert r["errors"][0]["extensions"]["code"] == "INTERNAL"

        # phase 2: the new key writes, the old one still reads; every case stays readable, new writes use the new key
        async with api(db, redis_url, redis_prefix, tmp_path, new, retired=old) as (gql, _):
            for token in tokens:
                assert (await gql(MY_KYC, token=token))["data"]["myKyc"]["details"]["fullName"] == "Ada Quagmire"
            fresh = await sign_up(gql)
            await gql(SUBMIT, {"input": PERSONAL}, fresh)
            tokens.append(fresh)
            assert b"\x02" + key_id(bytes.fromhex(new)) in (await headers(db))["kyc"]

            env = {"KYC_ENCRYPTION_KEY": new, "KYC_RETIRED_ENCRYPTION_KEYS": old}
            code, out = finish(
                run_rwa("kyc", "rekey", "--status", db=db, redis_url=redis_url, tmp_path=tmp_path, **env)
            )
            assert code == 1 and "user_data_keys.wrapped_key: 3 left" in out and "user_mfa.secret_enc: 1 left" in out, (
                out
            )

            # the rekey runs (batches of 1) while the API keeps answering reads of every case
            proc = run_rwa("kyc", "rekey", "--batch", "1", db=db, redis_url=redis_url, tmp_path=tmp_path, **env)
            reads = 0
            while proc.poll() is None or reads == 0:
                for token in tokens:
                    r = await gql(MY_KYC, token=token)
                    assert r["data"]["myKyc"]["details"]["documentNumber"] == "C01X00T47", r
                    reads += 1
                await asyncio.sleep(0.01)
            code, out = finish(proc)
            assert code == 0, out
            assert "3 re-encrypted, 0 left" in out and "1 re-encrypted, 0 left" in out, out
        assert await headers(db) == {
            "kyc": {b"\x02" + key_id(bytes.fromhex(new))},
            "mfa": {b"\x02" + key_id(bytes.fromhex(new))},
        }
        code, out = finish(
            run_rwa("kyc", "rekey", "--status", db=db, redis_url=redis_url, tmp_path=tmp_path, KYC_ENCRYPTION_KEY=new)
        )
        assert code == 0 and "rows left under old keys: 0" in out, out

        # phase 3: the old key is gone; everything reads under the new key alone, and the rekey left audit rows
        async with api(db, redis_url, redis_prefix, tmp_path, new) as (gql, services):
            for token in tokens:
                assert (await gql(MY_KYC, token=token))["data"]["myKyc"]["details"]["fullName"] == "Ada Quagmire"
            async with services.session_factory() as session:
                audit = (
                    (await session.execute(text("SELECT details FROM audit_log WHERE action = 'kyc.rekey'")))
                    .scalars()
                    .all()
                )
                assert sum(d["rows"] for d in audit) == 4 and all(
                    d["key_id"] == key_id(bytes.fromhex(new)).hex() for d in audit
                )
                secret = (await session.execute(text("SELECT user_id, secret_enc FROM user_mfa"))).one()
                FieldCipher(bytes.fromhex(new)).decrypt(bytes(secret.secret_enc), b"mfa-totp:" + secret.user_id.bytes)

        # a rotation that forgot the retired key: a clean refusal, nothing changed
        newer = os.urandom(32).hex()
        code, out = finish(
            run_rwa("kyc", "rekey", db=db, redis_url=redis_url, tmp_path=tmp_path, KYC_ENCRYPTION_KEY=newer)
        )
        assert code == 3 and "neither KYC_ENCRYPTION_KEY nor in KYC_RETIRED_ENCRYPTION_KEYS" in out, out
        assert "Traceback" not in out
        assert (await headers(db))["kyc"] == {b"\x02" + key_id(bytes.fromhex(new))}
    finally:
        await drop_database(db)


def test_production_refuses_a_malformed_or_current_retired_kyc_key() -> None:
    from core.settings import ConfigError
    from tests.platform.test_settings import production_env

    env = production_env()
    with pytest.raises(ConfigError, match="KYC_RETIRED_ENCRYPTION_KEYS"):
        Settings(**{**env, "KYC_RETIRED_ENCRYPTION_KEYS": "not-a-key"}).check_production()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="lists the current"):
        Settings(**{**env, "KYC_RETIRED_ENCRYPTION_KEYS": env["KYC_ENCRYPTION_KEY"]}).check_production()  # type: ignore[arg-type]
    Settings(**{**env, "KYC_RETIRED_ENCRYPTION_KEYS": os.urandom(32).hex()}).check_production()  # type: ignore[arg-type]


def test_jwt_rotation_in_three_phases(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RWA_ENV": "test",
        "RWA_DATA_DIR": str(tmp_path / "data"),
        "JWT_PRIVATE_KEY": TEST_JWT_KEY,
        "JWT_KEY_ID": "prod-1",
        "JWT_RETIRED_PUBLIC_KEYS": "{}",
    }
    made = subprocess.run(
        [RWA, "keys", "jwt-new", "--kid", "prod-2", "--out", str(tmp_path / "jwt-2.pem")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "jwt-2.pem").stat().st_mode & 0o077 == 0  # private key readable by its owner only
    new_pem = (tmp_path / "jwt-2.pem").read_text()
    phase1_retired = json.loads(made.stdout)
    assert phase1_retired == {"prod-2": public_key_pem(new_pem)}
    again = subprocess.run(
        [RWA, "keys", "jwt-new", "--kid", "prod-3", "--out", str(tmp_path / "jwt-2.pem")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        again.returncode == 2 and "not overwritten" in again.stderr and (tmp_path / "jwt-2.pem").read_text() == new_pem
    )

    user = uuid.uuid4()
    before = KeyRing(TEST_JWT_KEY, "prod-1")
    phase1 = KeyRing(TEST_JWT_KEY, "prod-1", phase1_retired)  # publishes prod-2, still signs with prod-1
    phase2 = KeyRing(new_pem, "prod-2", {"prod-1": public_key_pem(TEST_JWT_KEY)})
    phase3 = KeyRing(new_pem, "prod-2")
    old_token, _ = before.issue(user, ["INVESTOR"])
    new_token, _ = phase2.issue(user, ["INVESTOR"])
    # during the rollout of phase 2 pods of phase 1 and 2 run side by side: each accepts the other's tokens
    for ring in (phase1, phase2):
        assert ring.verify(old_token).user_id == user and ring.verify(new_token).user_id == user
    assert phase3.verify(new_token).user_id == user
    with pytest.raises(Unauthenticated):
        phase3.verify(old_token)  # after phase 3 the old key verifies nothing

    status = subprocess.run(
        [RWA, "keys", "jwt-status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **env,
            "JWT_PRIVATE_KEY": new_pem,
            "JWT_KEY_ID": "prod-2",
            "JWT_RETIRED_PUBLIC_KEYS": json.dumps({"prod-1": public_key_pem(TEST_JWT_KEY)}),
        },
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {"signing": "prod-2", "verifying": ["prod-1", "prod-2"]}
    broken = subprocess.run(
        [RWA, "keys", "jwt-status"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "JWT_RETIRED_PUBLIC_KEYS": '{"prod-0": "not a pem"}'},
    )
    assert broken.returncode == 2 and "JWT_RETIRED_PUBLIC_KEYS" in broken.stderr and "Traceback" not in broken.stderr
    assert generate_private_key_pem() != new_pem
