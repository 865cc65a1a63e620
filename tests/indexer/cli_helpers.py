"""Running `rwa index ...` as a subprocess against a database of its own (committed rows, unlike the
rolled-back `db` fixture) and the anvil fixtures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.fixtures.db import _asyncpg_dsn, admin_database_url, fresh_database

REPO = Path(__file__).resolve().parents[2]
RWA = str(REPO / ".venv" / "bin" / "rwa")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def secret_url(port: int) -> str:
    """A provider-style URL whose userinfo, path and query must never be printed."""
    return f"http://apiuser:s3cr3tkey@127.0.0.1:{port}/v3/PATHKEY123?apikey=QUERYKEY"


SECRETS = ("s3cr3tkey", "PATHKEY123", "QUERYKEY", "apiuser")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


def rwa_env(
    database_url: str, redis_url: str, rpc: Mapping[int, str] | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RPC_URLS_", "RWA_INDEXER_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "RWA_ENV": "test",
            "LOG_JSON": "false",
            "RWA_REDIS_PREFIX": f"rwa-test:{uuid.uuid4().hex[:8]}:",
        }
    )
    env.update({f"RPC_URLS_{chain_id}": url for chain_id, url in (rpc or {}).items()})
    env.update(extra or {})
    return env


def run_rwa(
    args: list[str],
    database_url: str,
    redis_url: str,
    rpc: Mapping[int, str] | None = None,
    timeout: float = 60,
    extra: Mapping[str, str] | None = None,
) -> Result:
    proc = subprocess.run(
        [RWA, "index", *args],
        env=rwa_env(database_url, redis_url, rpc, extra),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_many(calls: list[tuple[list[str], dict[int, str] | None]], database_url: str, redis_url: str) -> list[Result]:
    """Several independent invocations at once (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda call: run_rwa(call[0], database_url, redis_url, call[1]), calls))


@pytest.fixture(scope="module")
async def cli_database_url(service_urls: tuple[str, str]) -> AsyncIterator[str]:
    """A fresh migrated database per module: the CLI runs in another process and sees committed rows only."""
    async with fresh_database(admin_database_url(), "rwa_test_cli") as url:
        yield url


async def sql(database_url: str, statement: str, *args: Any) -> Any:
    conn = await asyncpg.connect(_asyncpg_dsn(database_url))
    try:
        return await conn.fetch(statement, *args)
    finally:
        await conn.close()
