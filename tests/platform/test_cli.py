"""`rwa user create-admin` and `rwa migrate` as an operator runs them: subprocesses with DATABASE_URL/REDIS_URL set
(so no embedded services start). They commit, and audit rows cannot be deleted, so they get databases of their own
rather than the shared test database that other tests expect to be empty."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from core.migrate import upgrade
from core.services import build_services
from models.identity import AuditLog, User
from server.app import create_app
from tests.fixtures.app import make_settings

REPO = Path(__file__).resolve().parents[2]
RWA = str(Path(sys.executable).with_name("rwa"))
PASSWORD = "admin-passphrase-42"
LOGIN = """mutation($e: String!, $p: String!) {
  login(input: {email: $e, password: $p}) { session { accessToken user { roles } } } }"""
GRANT = "mutation($u: UUID!) { grantRole(input: {userId: $u, role: ISSUER}) { user { id roles } errors { code } } }"
REGISTER = """mutation($e: String!, $p: String!) {
  register(input: {email: $e, password: $p}) { session { user { id } } errors { code } } }"""


def rwa(
    *args: str, database_url: str, redis_url: str, tmp_path: Path, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RWA_ENV": "test",
        "RWA_DATA_DIR": str(tmp_path / "data"),
        **extra_env,
    }
    return subprocess.run(
        [RWA, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


async def create_database(database_url: str, *, migrated: bool) -> str:
    """A new database on the test database's server."""
    url = make_url(database_url)
    name = f"rwa_cli_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(
        url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    new_url = url.set(database=name).render_as_string(hide_password=False)
    if migrated:
        await upgrade(new_url)
    return new_url


async def drop_database(database_url: str) -> None:
    url = make_url(database_url)
    admin = await asyncpg.connect(
        url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def cli_database(database_url: str):  # type: ignore[no-untyped-def]
    url = await create_database(database_url, migrated=True)
    yield url
    await drop_database(url)


@pytest.fixture
async def cli_session(cli_database: str):  # type: ignore[no-untyped-def]
    engine = create_async_engine(cli_database, pool_size=1)
    async with AsyncSession(engine) as session:
        yield session
    await engine.dispose()


@pytest.fixture
async def cli_gql(cli_database: str, redis_url: str, redis_prefix: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """POST a GraphQL document to the real app running on the CLI's database."""
    settings = make_settings(cli_database, redis_url, redis_prefix, tmp_path / "app")
    services = build_services(settings)
    app = create_app(settings, services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:

        async def _post(query: str, variables: dict, token: str | None = None) -> dict:  # type: ignore[type-arg]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return (
                await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
            ).json()

        yield _post
    await services.aclose()


@pytest.fixture
def run(cli_database: str, redis_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    def _run(*args: str) -> subprocess.CompletedProcess[str]:
        return rwa(*args, database_url=cli_database, redis_url=redis_url, tmp_path=tmp_path)

    return _run


def assert_clean_failure(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


async def test_create_admin_then_login_and_grant_role(run, cli_gql, cli_session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    email = f"Admin-{uuid.uuid4().hex[:8]}@Example.com"
    proc = run("user", "create-admin", "--email", email, "--password", PASSWORD)
    assert proc.returncode == 0, proc.stderr
    assert email.lower() in proc.stderr
    assert not (tmp_path / "data" / "pg").exists(), "a configured DATABASE_URL must not start embedded Postgres"

    login = await cli_gql(LOGIN, {"e": email.lower(), "p": PASSWORD})
    assert ((login.get("data") or {}).get("login") or {}).get("session"), login
    assert sorted(login["data"]["login"]["session"]["user"]["roles"]) == ["ADMIN", "INVESTOR"], login
    token = login["data"]["login"]["session"]["accessToken"]
    investor = await cli_gql(REGISTER, {"e": f"inv-{uuid.uuid4().hex[:8]}@example.com", "p": "investor-pass-1"})
    investor_id = investor["data"]["register"]["session"]["user"]["id"]
    granted = await cli_gql(GRANT, {"u": investor_id}, token=token)
    assert sorted(granted["data"]["grantRole"]["user"]["roles"]) == ["INVESTOR", "ISSUER"], granted

    admin_id = (await cli_session.execute(select(User.id).where(User.email == email.lower()))).scalar_one()
    audit = await cli_session.execute(select(AuditLog.action).where(AuditLog.target_id == str(admin_id)))
    assert "user.create_admin" in audit.scalars().all()


async def test_create_admin_promotes_an_existing_user(run, cli_session) -> None:  # type: ignore[no-untyped-def]
    email = f"promote-{uuid.uuid4().hex[:8]}@example.com"
    first = run("user", "create-admin", "--email", email, "--password", PASSWORD)
    assert first.returncode == 0, first.stderr
    again = run("user", "create-admin", "--email", email, "--password", "another-pass-99")
    assert again.returncode == 0, again.stderr
    rows = (await cli_session.execute(select(User.roles).where(User.email == email))).scalars().all()
    assert len(rows) == 1 and "ADMIN" in rows[0]


@pytest.mark.parametrize(
    "email,password,expected",
    [
        ("not-an-email", PASSWORD, "invalid email"),
        ("", PASSWORD, "invalid email"),
        ("ok-{}@example.com", "short", "password"),
    ],
)
async def test_create_admin_refuses_bad_input(run, cli_session, email: str, password: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    email = email.format(uuid.uuid4().hex[:8])
    proc = run("user", "create-admin", "--email", email, "--password", password)
    assert_clean_failure(proc)
    assert expected in proc.stderr.lower()
    if email:
        assert (await cli_session.execute(select(User.id).where(User.email == email.lower()))).first() is None


def test_create_admin_checks_the_email_before_prompting(run) -> None:  # type: ignore[no-untyped-def]
    proc = run("user", "create-admin", "--email", "not-an-email")  # no --password: it would prompt
    assert_clean_failure(proc)
    assert proc.returncode == 2 and "invalid email" in proc.stderr.lower()
    assert "password" not in (proc.stdout + proc.stderr).lower()


@pytest.mark.parametrize(
    "args", [("serve", "--port", "99999"), ("dev", "--port", "0"), ("index", "run", "--metrics-port", "70000")]
)
def test_ports_out_of_range_are_refused(args: tuple[str, ...], tmp_path: Path, redis_url: str) -> None:
    """`rwa serve --port 99999` used to start, announcing port 99999 while listening on 99999 % 65536."""
    proc = rwa(
        *args, database_url="postgresql+asyncpg://postgres@127.0.0.1:1/postgres", redis_url=redis_url, tmp_path=tmp_path
    )
    assert_clean_failure(proc)
    assert proc.returncode == 2 and "port" in proc.stderr.lower(), proc.stderr


@pytest.mark.parametrize("command", [("serve", "--port", "1"), ("worker",)])
@pytest.mark.parametrize(
    "variable, value, code",
    [
        ("JWT_PRIVATE_KEY", "garbage", 2),
        ("JWT_RETIRED_PUBLIC_KEYS", "not json", 2),
        ("JWT_RETIRED_PUBLIC_KEYS", '{"old": "garbage"}', 2),
        ("KYC_ENCRYPTION_KEY", "short", 2),
        ("LOG_LEVEL", "bogus", 2),
        ("RWA_DATA_DIR", "/proc/no-such-dir/data", 3),
    ],
)
def test_bad_configuration_is_one_line_naming_it(
    command: tuple[str, ...], variable: str, value: str, code: int, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Each was a traceback (from inside the uvicorn worker for the keys); nothing starts listening."""
    proc = rwa(*command, database_url=database_url, redis_url=redis_url, tmp_path=tmp_path, **{variable: value})
    assert_clean_failure(proc)
    assert proc.returncode == code, proc.stderr
    assert (variable if code == 2 else "data dir") in " ".join(proc.stderr.split()), proc.stderr


def test_create_admin_with_unreachable_database_fails_cleanly(tmp_path: Path, redis_url: str) -> None:
    proc = rwa(
        "user",
        "create-admin",
        "--email",
        "a@example.com",
        "--password",
        PASSWORD,
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/postgres",
        redis_url=redis_url,
        tmp_path=tmp_path,
    )
    assert_clean_failure(proc)
    assert "database" in proc.stderr.lower()


@pytest.fixture
async def empty_database(database_url: str):  # type: ignore[no-untyped-def]
    url = await create_database(database_url, migrated=False)
    yield url
    await drop_database(url)


async def schema_fingerprint(database_url: str) -> tuple[str, list[tuple[str, str]]]:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        version = await conn.fetchval("SELECT version_num FROM alembic_version")
        columns = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
        )
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
    proc = rwa(
        "migrate",
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/postgres",
        redis_url=redis_url,
        tmp_path=tmp_path,
    )
    assert_clean_failure(proc)
    assert "database" in proc.stderr.lower()


@pytest.mark.parametrize(
    "broken, expected",
    [
        (lambda url: "not a url", "postgresql+asyncpg://"),
        (lambda url: "mysql://root@127.0.0.1/db", "postgresql+asyncpg://"),
        (lambda url: url.set(drivername="postgresql"), "postgresql+asyncpg://"),  # sync driver: unusable
        (lambda url: url.set(database=f"missing_{uuid.uuid4().hex[:8]}"), "does not exist"),
        (lambda url: url.set(username=f"nobody_{uuid.uuid4().hex[:8]}", password="x"), "refused"),
    ],
)
def test_migrate_with_an_unusable_database_url_fails_cleanly(
    broken,
    expected: str,
    database_url: str,  # type: ignore[no-untyped-def]
    redis_url: str,
    tmp_path: Path,
) -> None:
    bad = broken(make_url(database_url))
    bad = bad if isinstance(bad, str) else bad.render_as_string(hide_password=False)
    proc = rwa("migrate", database_url=bad, redis_url=redis_url, tmp_path=tmp_path)
    assert_clean_failure(proc)
    assert proc.returncode in (2, 3), proc.stderr
    assert expected in " ".join(proc.stderr.split()), proc.stderr  # rich wraps at the terminal width
