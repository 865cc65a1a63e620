"""`rwa user create-admin` and `rwa migrate` as an operator runs them: subprocesses against the test database
(DATABASE_URL/REDIS_URL set, so no embedded services start)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from models.identity import AuditLog, User

REPO = Path(__file__).resolve().parents[2]
RWA = str(Path(sys.executable).with_name("rwa"))
PASSWORD = "admin-passphrase-42"
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken user { roles } } }"
GRANT = "mutation($u: UUID!) { grantRole(userId: $u, role: ISSUER) { id roles } }"


def rwa(*args: str, database_url: str, redis_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "RWA_ENV": "test",
           "RWA_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([RWA, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def run(database_url: str, redis_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    def _run(*args: str) -> subprocess.CompletedProcess[str]:
        return rwa(*args, database_url=database_url, redis_url=redis_url, tmp_path=tmp_path)

    return _run


def assert_clean_failure(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


async def test_create_admin_then_login_and_grant_role(run, gql, make_user, session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    email = f"Admin-{uuid.uuid4().hex[:8]}@Example.com"
    proc = run("user", "create-admin", "--email", email, "--password", PASSWORD)
    assert proc.returncode == 0, proc.stderr
    assert email.lower() in proc.stderr
    assert not (tmp_path / "data" / "pg").exists(), "a configured DATABASE_URL must not start embedded Postgres"

    login = await gql(LOGIN, {"e": email.lower(), "p": PASSWORD})
    assert (login.get("data") or {}).get("login"), login
    assert sorted(login["data"]["login"]["user"]["roles"]) == ["ADMIN", "INVESTOR"], login
    token = login["data"]["login"]["accessToken"]
    investor = await make_user()
    granted = await gql(GRANT, {"u": str(investor.id)}, token=token)
    assert sorted(granted["data"]["grantRole"]["roles"]) == ["INVESTOR", "ISSUER"], granted

    admin_id = (await session.execute(select(User.id).where(User.email == email.lower()))).scalar_one()
    audit = (await session.execute(select(AuditLog.action).where(AuditLog.target_id == str(admin_id)))).scalars().all()
    assert "user.create_admin" in audit


async def test_create_admin_promotes_an_existing_user(run, make_user, session) -> None:  # type: ignore[no-untyped-def]
    email = f"promote-{uuid.uuid4().hex[:8]}@example.com"
    first = run("user", "create-admin", "--email", email, "--password", PASSWORD)
    assert first.returncode == 0, first.stderr
    again = run("user", "create-admin", "--email", email, "--password", "another-pass-99")
    assert again.returncode == 0, again.stderr
    rows = (await session.execute(select(User.roles).where(User.email == email))).scalars().all()
    assert len(rows) == 1 and "ADMIN" in rows[0]


@pytest.mark.parametrize("email,password,expected", [
    ("not-an-email", PASSWORD, "invalid email"),
    ("", PASSWORD, "invalid email"),
    ("ok-{}@example.com", "short", "password"),
])
async def test_create_admin_refuses_bad_input(run, session, email: str, password: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    email = email.format(uuid.uuid4().hex[:8])
    proc = run("user", "create-admin", "--email", email, "--password", password)
    assert_clean_failure(proc)
    assert expected in proc.stderr.lower()
    if email:
        assert (await session.execute(select(User.id).where(User.email == email.lower()))).first() is None


def test_create_admin_with_unreachable_database_fails_cleanly(tmp_path: Path, redis_url: str) -> None:
    proc = rwa("user", "create-admin", "--email", "a@example.com", "--password", PASSWORD,
               database_url="postgresql+asyncpg://postgres@127.0.0.1:1/postgres", redis_url=redis_url,
               tmp_path=tmp_path)
    assert_clean_failure(proc)
    assert "database" in proc.stderr.lower()


@pytest.fixture
async def empty_database(database_url: str):  # type: ignore[no-untyped-def]
    """A database with nothing in it, on the same server as the test database."""
    url = make_url(database_url)
    name = f"rwa_cli_{uuid.uuid4().hex[:10]}"
    admin_dsn = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield url.set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def schema_fingerprint(database_url: str) -> tuple[str, list[tuple[str, str]]]:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        version = await conn.fetchval("SELECT version_num FROM alembic_version")
        columns = await conn.fetch("SELECT table_name, column_name FROM information_schema.columns "
                                   "WHERE table_schema = 'public' ORDER BY 1, 2")
    finally:
        await conn.close()
    return version, [(r["table_name"], r["column_name"]) for r in columns]


async def test_migrate_is_idempotent(empty_database: str, redis_url: str, tmp_path: Path) -> None:
    first = rwa("migrate", database_url=empty_database, redis_url=redis_url, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    after_first = await schema_fingerprint(empty_database)
    assert ("users", "email") in after_first[1]
    second = rwa("migrate", database_url=empty_database, redis_url=redis_url, tmp_path=tmp_path)
    assert second.returncode == 0, second.stderr
    assert await schema_fingerprint(empty_database) == after_first
    assert "latest migration" in second.stderr


def test_migrate_with_unreachable_database_fails_cleanly(tmp_path: Path, redis_url: str) -> None:
    proc = rwa("migrate", database_url="postgresql+asyncpg://postgres@127.0.0.1:1/postgres", redis_url=redis_url,
               tmp_path=tmp_path)
    assert_clean_failure(proc)
    assert "database" in proc.stderr.lower()
