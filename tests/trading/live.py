"""Helpers for tests against real API processes: N uvicorn servers on the test database sharing one Redis prefix
(so pub/sub crosses processes), committed-data sessions, and a minimal graphql-transport-ws client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from cli.main import WEBSOCKETS  # the API runs as `rwa serve` runs it
from tests.fixtures.app import REPO, TEST_JWT_KEY, free_port


@dataclass
class Servers:
    urls: list[str]
    procs: list[subprocess.Popen]
    prefix: str


@contextlib.contextmanager
def api_servers(
    database_url: str, redis_url: str, n: int = 2, extra_env: dict[str, str] | None = None, data_dir: str = "/tmp"
) -> Iterator[Servers]:
    prefix = f"rwa-trading:{uuid.uuid4().hex[:8]}:"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RWA_ENV": "test",
        "RWA_DATA_DIR": data_dir,
        "RWA_REDIS_PREFIX": prefix,
        "JWT_PRIVATE_KEY": TEST_JWT_KEY,
        "KYC_ENCRYPTION_KEY": os.urandom(32).hex(),
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    procs: list[subprocess.Popen] = []
    urls: list[str] = []
    try:
        for _ in range(n):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "server.app:create_app_from_env",
                        "--factory",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--ws",
                        WEBSOCKETS,
                        "--log-level",
                        "warning",
                        "--no-access-log",
                    ],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120  # slow starts on a busy 2-core machine; an exit fails at once
        for proc, url in zip(procs, urls):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("API servers did not start in 120 s")
                time.sleep(0.1)
        yield Servers(urls, procs, prefix)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.asynccontextmanager
async def committed_sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(database_url, pool_size=4)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    finally:
        await engine.dispose()


async def graphql(
    client: httpx.AsyncClient, url: str, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.post(url + "/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


class WsSubscription:
    """One graphql-transport-ws connection with one subscription (id "1")."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if msg["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            return msg


@contextlib.asynccontextmanager
async def subscribe(
    url: str, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> AsyncIterator[WsSubscription]:
    ws_url = url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
        payload = {"authorization": f"Bearer {token}"} if token else {}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})
        )
        yield WsSubscription(ws)


@contextlib.asynccontextmanager
async def listening(redis_url: str, prefix: str) -> AsyncIterator[Any]:
    """A pub/sub listener on every channel under `prefix`, subscribed (confirmation read) before the body runs."""
    redis = Redis.from_url(redis_url)
    listener = redis.pubsub()
    await listener.psubscribe(prefix + "*")
    await listener.get_message(timeout=1)  # the subscription's confirmation
    try:
        yield listener
    finally:
        await listener.aclose()
        await redis.aclose()
