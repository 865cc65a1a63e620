"""Root fields that graphql-core resolves concurrently (a query's) each get their own database session.

One AsyncSession was handed to every root field of a query; graphql-core gathers a query's root fields, so a
dashboard batching `{ myKyc myApiKeys myWallets markets }` failed INTERNAL under load ("This session is
provisioning a new connection; concurrent operations are not permitted"). These tests run the app over its real
engine, session factories and read pool (as `rwa serve` does) on a database of the module's own, since the
test-transaction fixtures bind every session to one connection.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from core.jwt_keys import KeyRing
from core.services import Services, build_services
from models.identity import Role, User
from server.app import create_app
from tests.fixtures.app import make_settings
from tests.platform.served import serving, websocket

DASHBOARD = "{ myKyc { status } myApiKeys { id } myWallets { address } markets { id } }"
# every root field reads through the session; the nested `issuer` fields go through a DataLoader of their root field
DASHBOARD_WITH_LOADERS = """{ a: assets(first: 5) { edges { node { id issuer { id } } } }
  myKyc { status } b: assets(first: 5) { edges { node { id issuer { id } } } } myWallets { address } }"""


@pytest.fixture
async def real_services(
    module_database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[Services]:
    """Services as `rwa serve` builds them: own engine (small pool, so requests must share it), read pool."""
    settings = make_settings(module_database_url, redis_url, redis_prefix, tmp_path / "data", RWA_DB_POOL_SIZE=5)
    services = build_services(settings)
    await services.open_read_pool()
    try:
        yield services
    finally:
        await services.aclose()


async def _user(services: Services) -> str:
    async with services.session_factory() as s:
        user = User(
            id=uuid.uuid4(),
            email=f"dash-{uuid.uuid4().hex[:8]}@example.com",
            password_hash="x",
            roles=[Role.INVESTOR.value],
        )
        s.add(user)
        await s.commit()
    keyring: KeyRing = services.keyring
    return keyring.issue(user.id, [Role.INVESTOR.value])[0]


async def _many(services: Services, query: str, token: str, n: int) -> list[dict]:
    app = create_app(services.settings, services)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:

        async def one() -> dict:
            resp = await client.post("/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == 200, resp.text
            return resp.json()

        return await asyncio.gather(*(one() for _ in range(n)))


async def test_sixty_concurrent_dashboard_queries_all_succeed(real_services: Services) -> None:
    token = await _user(real_services)
    results = await _many(real_services, DASHBOARD, token, 60)
    errors = [r["errors"] for r in results if r.get("errors")]
    assert errors == []
    assert all(r["data"]["myKyc"] is None and r["data"]["markets"] == [] for r in results)  # no KYC case yet


async def test_root_fields_with_dataloaders_under_load(real_services: Services) -> None:
    token = await _user(real_services)
    results = await _many(real_services, DASHBOARD_WITH_LOADERS, token, 40)
    assert [r for r in results if r.get("errors")] == []


async def test_one_request_many_root_fields(real_services: Services) -> None:
    """Twelve aliased root fields in one request, more than the pool holds: no deadlock, no shared session."""
    token = await _user(real_services)
    query = "{ " + " ".join(f"k{i}: myKyc {{ status }} w{i}: myWallets {{ address }}" for i in range(6)) + " }"
    (result,) = await _many(real_services, query, token, 1)
    assert "errors" not in result
    assert len(result["data"]) == 12


@pytest.mark.parametrize("query", [DASHBOARD, "{ myKyc { status } }", "{ myWallets { address } }"])
async def test_concurrent_operations_on_one_websocket(real_services: Services, query: str) -> None:
    """graphql-transport-ws runs a socket's operations concurrently over one context: each gets its own session
    (one operation ending closed the session another was using). The app builds its services as `rwa serve` does."""
    token = await _user(real_services)
    async with serving(create_app(real_services.settings, None)) as url, websocket(url) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        for i in range(20):
            await ws.send_json({"id": str(i), "type": "subscribe", "payload": {"query": query}})
        nexts, completes = {}, set()
        while len(completes) < 20:
            msg = await ws.receive_json()
            if msg["type"] == "next":
                nexts[msg["id"]] = msg["payload"]
            elif msg["type"] == "complete":
                completes.add(msg["id"])
            else:
                raise AssertionError(msg)
    assert [p for p in nexts.values() if p.get("errors")] == []
    assert len(nexts) == 20


async def test_sessions_bound_to_one_connection_take_turns(gql, make_user, services: Services) -> None:
    """The test-transaction services bind every session to one connection: root fields then run one after the
    other instead of failing on that connection (fuzzers and tests send multi-root queries in-process too)."""
    assert services.single_connection
    user = await make_user()
    for _ in range(3):
        result = await gql(DASHBOARD.replace("}", "} me { id }", 1), token=user.token)
        assert "errors" not in result, result
