"""Databases a killed test session left behind are dropped by a later session (tests/fixtures/db.py:
drop_stale_databases), and nothing another session may still use: other pytest sessions (xdist workers, other
people's runs) share the Postgres server while this runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.fixtures.db import (
    SESSION_APPLICATION_NAME,
    SESSION_TOKEN,
    STALE_AFTER_S,
    drop_stale_databases,
    stale_database_names,
)

HOUR = 3600


def _name(created: float, session: str, prefix: str = "rwa_test") -> str:
    return f"{prefix}_{int(created)}_{session}_{uuid.uuid4().hex[:6]}"


def _dsn(admin_url: str, database: str | None = None) -> str:
    url = make_url(admin_url).set(drivername="postgresql")
    return (url.set(database=database) if database else url).render_as_string(hide_password=False)


def test_only_old_databases_of_ended_sessions_are_stale() -> None:
    now = time.time()
    dead, live = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    old = now - STALE_AFTER_S - 60
    stale = [_name(old, dead), _name(old, dead, "rwa_test_tmpl"), _name(old, dead, "rwa_idx")]
    kept = [
        _name(now - STALE_AFTER_S + 60, dead),  # young: its session may still be starting up
        _name(old, live),  # its session still holds its connection
        _name(old, live, "rwa_test_tmpl"),
        f"rwa_test_{uuid.uuid4().hex[:10]}",  # not named by new_database_name (older sessions, other code)
        f"rwa_bench_{int(old)}_{uuid.uuid4().hex[:8]}",
        "postgres",
    ]
    assert stale_database_names(stale + kept, {live}, now) == stale


def test_a_live_session_keeps_its_databases_however_old(database_url: str, migrated_template: str) -> None:
    """This session's database and template (which nobody connects to) carry its token, and its connection named
    for it keeps them out of the stale ones even a day from now."""
    own = [make_url(database_url).database or "", migrated_template]
    assert all(SESSION_TOKEN in name for name in own)
    assert stale_database_names(own, {SESSION_TOKEN}, time.time() + 24 * HOUR) == []
    assert stale_database_names(own, set(), time.time() + 24 * HOUR) == own


async def _exists(admin: asyncpg.Connection, name: str) -> bool:
    return await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1


@pytest.fixture
async def admin(service_urls: tuple[str, str]) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(_dsn(service_urls[0]))
    yield conn
    await conn.close()


async def test_stale_databases_are_dropped_and_used_ones_kept(
    service_urls: tuple[str, str], admin: asyncpg.Connection
) -> None:
    admin_url = service_urls[0]
    old = time.time() - STALE_AFTER_S - HOUR
    dead, live = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    left_behind = _name(old, dead)
    young = _name(time.time() - HOUR, dead)
    connected = _name(old, dead)
    of_live_session = _name(old, live, "rwa_test_tmpl")
    other_shape = f"rwa_test_{uuid.uuid4().hex[:10]}"
    names = [left_behind, young, connected, of_live_session, other_shape]
    holders: list[asyncpg.Connection] = []
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
        # someone still connected to one; the live session's own connection, named as the fixtures name theirs
        holders.append(await asyncpg.connect(_dsn(admin_url, connected)))
        holders.append(
            await asyncpg.connect(
                _dsn(admin_url),
                server_settings={"application_name": SESSION_APPLICATION_NAME.replace(SESSION_TOKEN, live)},
            )
        )

        dropped = await drop_stale_databases(admin_url)

        assert not await _exists(admin, left_behind)  # (another session's sweep may have dropped it first)
        assert not set(dropped) & set(names[1:])  # (it may hold stale ones of other killed sessions)
        for name in names[1:]:
            assert await _exists(admin, name), name
        assert (
            await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", SESSION_APPLICATION_NAME
            )
            == 1
        )  # this session's own proof of life, held by the fixtures
    finally:
        for holder in holders:
            await holder.close()
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
