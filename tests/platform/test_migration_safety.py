"""Migrations in production: `rwa migrate` refuses while another migration holds the migration lock, a DDL waiting
for a table lock gives up after MIGRATION_LOCK_TIMEOUT_S with nothing applied, and with MIGRATE_ON_START off a
long-running command refuses a database behind the release instead of migrating it. Real Postgres, real `rwa`
subprocesses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from core.migrate import MIGRATION_LOCK_ID, alembic_config, current_revisions, head_revisions, upgrade
from core.settings import Settings
from tests.platform.test_cli import create_database, drop_database

RWA = str(Path(sys.executable).with_name("rwa"))


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _previous_revision() -> str:
    from alembic.script import ScriptDirectory

    (head,) = head_revisions()
    down = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    assert isinstance(down, str)
    return down


def _env(database_url: str, redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RWA_ENV": "test",
        "RWA_DATA_DIR": str(tmp_path / "data"),
        "LOG_JSON": "false",
        **extra,
    }


async def _run_rwa(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """`rwa <args>` run to its end in a thread, so the test's own database sessions (a blocker) stay served."""
    return await asyncio.to_thread(
        subprocess.run,
        [RWA, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
async def behind_database(database_url: str) -> AsyncIterator[str]:
    """A database one migration behind this release's head."""
    url = await create_database(database_url, migrated=False)
    try:
        await upgrade(url, _previous_revision())
        yield url
    finally:
        await drop_database(url)


async def _hold_alembic_version(url: str) -> asyncpg.Connection:
    """A session in a transaction holding alembic_version exclusively (like a long transaction on a table a
    migration must alter): every migration blocks on its first statement."""
    conn = await asyncpg.connect(_dsn(url))
    await conn.execute("BEGIN")
    await conn.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
    return conn


async def _migration_lock_holder(url: str) -> int | None:
    conn = await asyncpg.connect(_dsn(url))
    try:
        return await conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = $1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            MIGRATION_LOCK_ID,
        )
    finally:
        await conn.close()


async def test_two_migrations_at_once_one_refuses(behind_database: str, redis_url: str, tmp_path: Path) -> None:
    blocker = await _hold_alembic_version(behind_database)
    env = _env(behind_database, redis_url, tmp_path, MIGRATION_LOCK_TIMEOUT_S="60")
    first = subprocess.Popen(
        [RWA, "migrate"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while (holder := await _migration_lock_holder(behind_database)) is None:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first migration never took the migration lock"
            await asyncio.sleep(0.2)
        started = time.monotonic()
        second = await _run_rwa("migrate", env=env, cwd=tmp_path)
        refused_in = time.monotonic() - started
        assert second.returncode == 5, second.stderr
        said = " ".join(second.stderr.split())  # rich wraps long lines
        assert "another migration is running" in said and f"pid {holder}" in said, said
        assert "application rwa-migrate" in said and "Traceback" not in said, said
        assert refused_in < 20, refused_in  # at once (process start included), not after the first one's wait
        # read through the blocking session (it holds alembic_version; anyone else would wait)
        stamped = {r[0] for r in await blocker.fetch("SELECT version_num FROM alembic_version")}
        assert stamped == {_previous_revision()}, "the refused one applied something"
        assert first.poll() is None, "the first migration must still be waiting for the table"
    finally:
        await blocker.execute("ROLLBACK")
        await blocker.close()
    out, errors = await asyncio.to_thread(first.communicate, timeout=60)
    assert first.returncode == 0, errors
    assert await current_revisions(behind_database) == head_revisions()
    assert await _migration_lock_holder(behind_database) is None, "the migration lock was not released"


async def test_lock_timeout_aborts_with_nothing_applied(behind_database: str, redis_url: str, tmp_path: Path) -> None:
    blocker = await _hold_alembic_version(behind_database)
    try:
        started = time.monotonic()
        proc = await _run_rwa(
            "migrate", env=_env(behind_database, redis_url, tmp_path, MIGRATION_LOCK_TIMEOUT_S="1"), cwd=tmp_path
        )
        took = time.monotonic() - started
    finally:
        await blocker.execute("ROLLBACK")
        await blocker.close()
    assert proc.returncode == 6, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "MIGRATION_LOCK_TIMEOUT_S=1 s" in said and "nothing was applied" in said, said
    assert "Traceback" not in proc.stderr
    assert took < 30, took
    assert await current_revisions(behind_database) == {_previous_revision()}
    assert await _migration_lock_holder(behind_database) is None
    # nothing in the way any more: the same command migrates
    again = await _run_rwa(
        "migrate",
        env=_env(behind_database, redis_url, tmp_path, MIGRATION_LOCK_TIMEOUT_S="1"),
        cwd=tmp_path,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert await current_revisions(behind_database) == head_revisions()


async def test_serve_refuses_a_schema_behind_without_migrating(
    behind_database: str, redis_url: str, tmp_path: Path
) -> None:
    proc = await _run_rwa(
        "serve",
        "--port",
        "1",  # never gets to bind
        env=_env(behind_database, redis_url, tmp_path, MIGRATE_ON_START="false"),
        cwd=tmp_path,
    )
    assert proc.returncode == 4, proc.stderr
    said = " ".join(proc.stderr.split())  # rich wraps long lines
    assert "run `rwa migrate`" in said and f"schema is at {_previous_revision()}," in said, said
    assert await current_revisions(behind_database) == {_previous_revision()}, "serve migrated"


async def test_worker_refuses_a_schema_behind_too(behind_database: str, redis_url: str, tmp_path: Path) -> None:
    proc = await _run_rwa(
        "worker", env=_env(behind_database, redis_url, tmp_path, MIGRATE_ON_START="false"), cwd=tmp_path
    )
    assert proc.returncode == 4, proc.stderr
    assert await current_revisions(behind_database) == {_previous_revision()}


def test_production_does_not_migrate_on_start_by_default() -> None:
    assert Settings(RWA_ENV="production").migrate_at_start is False  # type: ignore[call-arg]
    assert Settings(RWA_ENV="development").migrate_at_start is True  # type: ignore[call-arg]
    assert Settings(RWA_ENV="production", MIGRATE_ON_START="true").migrate_at_start is True  # type: ignore[call-arg]
    assert Settings(RWA_ENV="development", MIGRATE_ON_START="0").migrate_at_start is False  # type: ignore[call-arg]
