"""Revocation across processes: two app instances (two Services, as two `rwa serve` processes build them) share
Redis and the database. A session logged out, an API key revoked on one is refused by the very next request on
the other; a user disabled or deleted in the database (by SQL, whoever does it) loses every token on both, and a
process started later learns it too."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from core.revocation import USER
from core.services import Services, build_services
from core.settings import Settings
from models.identity import Role, User
from server.app import create_app
from tests.fixtures.app import TEST_JWT_KEY, make_settings
from tests.fixtures.db import _asyncpg_dsn
from tests.platform.served import serving, websocket

ME = "{ me { id } }"
LOGOUT = "mutation { logout { ok errors { code } } }"
CREATE_KEY = 'mutation { createApiKey(input: {name: "board"}) { createdApiKey { secret apiKey { id } } } }'
REVOKE_KEY = "mutation($id: UUID!) { revokeApiKey(id: $id) { apiKey { id } errors { code } } }"
WRITES = [
    CREATE_KEY,
    LOGOUT,
    'mutation { walletChallenge(input: {address: "0x' + "ab" * 20 + '"}) { challenge { nonce } } }',
    'mutation { createPayment(input: {amount: "10", currency: "USD", method: BANK_TRANSFER, '
    'idempotencyKey: "k1"}) { payment { id } } }',
    'mutation { placeOrder(input: {marketId: "%s", side: BUY, type: LIMIT, quantity: "1", price: "1", '
    'clientOrderId: "c1"}) { order { id } } }' % uuid.uuid4(),
]


def _settings(database_url: str, redis_url: str, prefix: str, data_dir: Path) -> Settings:
    return make_settings(database_url, redis_url, prefix, data_dir, RWA_DB_POOL_SIZE=3)


@pytest.fixture
async def process_factory(
    module_database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[Callable[[], Any]]:
    """`await new_process()` -> (Services started as `rwa serve` starts them, a client of its app)."""
    started: list[tuple[Services, httpx.AsyncClient]] = []

    async def new_process() -> tuple[Services, httpx.AsyncClient]:
        services = build_services(_settings(module_database_url, redis_url, redis_prefix, tmp_path / "data"))
        await services.start()
        app = create_app(services.settings, services)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)), base_url="http://testserver"
        )
        started.append((services, client))
        return services, client

    yield new_process
    for services, client in started:
        await client.aclose()
        await services.aclose()


async def _gql(client: httpx.AsyncClient, query: str, token: str, variables: dict | None = None) -> dict:  # type: ignore[type-arg]
    resp = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def _code(result: dict) -> str | None:  # type: ignore[type-arg]
    return result["errors"][0]["extensions"]["code"] if result.get("errors") else None


async def _register(client: httpx.AsyncClient) -> dict:  # type: ignore[type-arg]
    result = await client.post(
        "/graphql",
        json={
            "query": 'mutation($e: String!) { register(input: {email: $e, password: "s3cure-passphrase"}) '
            "{ session { accessToken refreshToken user { id } } } }",
            "variables": {"e": f"p-{uuid.uuid4().hex[:10]}@example.com"},
        },
    )
    return result.json()["data"]["register"]["session"]


async def _sql(database_url: str, statement: str, *args: Any) -> Any:
    conn = await asyncpg.connect(_asyncpg_dsn(database_url))
    try:
        return await conn.execute(statement, *args)
    finally:
        await conn.close()


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for an asynchronous delivery (a Postgres notification) to be applied, bounded."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not applied in time"
        await asyncio.sleep(0.01)


async def test_logout_on_one_process_is_seen_on_the_other_at_once(process_factory) -> None:  # type: ignore[no-untyped-def]
    (a, client_a), (b, client_b) = await process_factory(), await process_factory()
    assert a.revocations.live and b.revocations.live  # both answer from their in-memory mirror
    session = await _register(client_a)
    token = session["accessToken"]
    assert _code(await _gql(client_b, ME, token)) is None
    assert (await _gql(client_a, LOGOUT, token))["data"]["logout"]["ok"] is True
    assert _code(await _gql(client_b, ME, token)) == "UNAUTHENTICATED"
    assert _code(await _gql(client_a, ME, token)) == "UNAUTHENTICATED"


async def test_revoked_api_key_stops_on_every_process_at_once(process_factory) -> None:  # type: ignore[no-untyped-def]
    (_, client_a), (_, client_b) = await process_factory(), await process_factory()
    token = (await _register(client_a))["accessToken"]
    created = (await _gql(client_a, CREATE_KEY, token))["data"]["createApiKey"]["createdApiKey"]
    key = {"X-API-Key": created["secret"]}
    for client in (client_a, client_b):  # both processes now hold it in their cache
        assert (await client.post("/graphql", json={"query": ME}, headers=key)).json()["data"]["me"]
    revoked = await _gql(client_a, REVOKE_KEY, token, {"id": created["apiKey"]["id"]})
    assert _code(revoked) is None and revoked["data"]["revokeApiKey"]["errors"] == [], revoked
    for client in (client_b, client_a):
        body = (await client.post("/graphql", json={"query": ME}, headers=key)).json()
        assert _code(body) == "UNAUTHENTICATED", body


async def test_without_a_mirror_the_check_asks_redis(process_factory) -> None:  # type: ignore[no-untyped-def]
    (_a, client_a), (b, client_b) = await process_factory(), await process_factory()
    await b.revocations.stop()  # B lost its subscription: it checks Redis per request
    assert not b.revocations.live
    token = (await _register(client_a))["accessToken"]
    assert _code(await _gql(client_b, ME, token)) is None
    await _gql(client_a, LOGOUT, token)
    assert _code(await _gql(client_b, ME, token)) == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "change", ["UPDATE users SET status = 'DISABLED' WHERE id = $1", "DELETE FROM users WHERE id = $1"]
)
async def test_user_disabled_or_deleted_in_the_database_loses_every_token(
    process_factory, module_database_url, change: str
) -> None:  # type: ignore[no-untyped-def]
    (a, client_a), (b, client_b) = await process_factory(), await process_factory()
    user_id = uuid.uuid4()
    async with a.session_factory() as s:
        s.add(
            User(
                id=user_id, email=f"gone-{user_id.hex[:8]}@example.com", password_hash="x", roles=[Role.INVESTOR.value]
            )
        )
        await s.commit()
    token = a.keyring.issue(user_id, [Role.INVESTOR.value])[0]
    assert _code(await _gql(client_b, ME, token)) is None
    await _sql(module_database_url, change, user_id)
    await _until(lambda: str(user_id) in a.revocations._mirror[USER] and str(user_id) in b.revocations._mirror[USER])
    for client in (client_a, client_b):
        for doc in (ME, *WRITES):
            result = await _gql(client, doc, token)
            assert _code(result) == "UNAUTHENTICATED", (doc, result)
    audit = await _sql_fetch(module_database_url, "SELECT count(*) FROM audit_log WHERE actor_id = $1", user_id)
    assert audit == 0


async def test_a_process_started_later_knows_earlier_changes(process_factory, module_database_url) -> None:  # type: ignore[no-untyped-def]
    """Changed while no process listened: the table written by the trigger is replayed at start."""
    user_id = uuid.uuid4()
    await _sql(
        module_database_url,
        "INSERT INTO users (id, email, password_hash, roles, status, failed_logins, "
        "created_at, updated_at) VALUES ($1, $2, 'x', '{INVESTOR}', 'ACTIVE', 0, now(), now())",
        user_id,
        f"late-{user_id.hex[:8]}@example.com",
    )
    from core.jwt_keys import KeyRing

    token = KeyRing(TEST_JWT_KEY, "dev-1").issue(user_id, ["INVESTOR"])[0]
    await _sql(module_database_url, "UPDATE users SET status = 'DISABLED' WHERE id = $1", user_id)
    _, client = await process_factory()
    assert _code(await _gql(client, ME, token)) == "UNAUTHENTICATED"


async def _sql_fetch(database_url: str, statement: str, *args: Any) -> Any:
    conn = await asyncpg.connect(_asyncpg_dsn(database_url))
    try:
        return await conn.fetchval(statement, *args)
    finally:
        await conn.close()


async def test_a_socket_closes_when_its_session_is_revoked(
    module_database_url,
    redis_url,
    redis_prefix,  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    """Logged out on another process (another app instance): the socket authenticated by that session closes
    with 4403 instead of delivering private events until the token expires."""
    settings = _settings(module_database_url, redis_url, redis_prefix, tmp_path / "data")
    register = (
        'mutation($e: String!) { register(input: {email: $e, password: "s3cure-passphrase"}) '
        "{ session { accessToken refreshToken } } }"
    )
    async with (
        serving(create_app(settings)) as socket_side,
        serving(create_app(settings)) as other_url,
        httpx.AsyncClient(base_url=other_url, timeout=30) as other_side,
    ):
        tokens = []
        for _ in range(2):
            reply = await other_side.post(
                "/graphql", json={"query": register, "variables": {"e": f"ws-{uuid.uuid4().hex[:10]}@example.com"}}
            )
            tokens.append(reply.json()["data"]["register"]["session"]["accessToken"])
        async with websocket(socket_side) as revoked, websocket(socket_side) as unrelated:
            for ws, token in ((revoked, tokens[0]), (unrelated, tokens[1])):
                await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
                assert (await ws.receive_json())["type"] == "connection_ack"
            logout = await other_side.post(
                "/graphql", json={"query": LOGOUT}, headers={"Authorization": f"Bearer {tokens[0]}"}
            )
            assert logout.json()["data"]["logout"]["ok"] is True, logout.text
            assert await revoked.close_code() == 4403
            # the other user's socket still serves
            await unrelated.send_json({"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }"}})
            assert (await unrelated.receive_json())["type"] == "next"


async def test_a_logout_sent_on_the_socket_closes_it_without_an_error_log(
    module_database_url,
    redis_url,
    redis_prefix,  # type: ignore[no-untyped-def]
    tmp_path,
    caplog,
) -> None:
    """Found by an outside probe of rwa serve: `logout` run as a graphql-transport-ws operation revokes the session,
    the server closes the socket with 4403, and the operation's own answer then hit the closed socket: strawberry
    logged "Exception in worker task" at ERROR with a traceback, once per such operation."""
    settings = _settings(module_database_url, redis_url, redis_prefix, tmp_path / "data")
    register = (
        'mutation($e: String!) { register(input: {email: $e, password: "s3cure-passphrase"}) '
        "{ session { accessToken } } }"
    )
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(3):
            reply = await client.post(
                "/graphql", json={"query": register, "variables": {"e": f"wsout-{uuid.uuid4().hex[:10]}@example.com"}}
            )
            token = reply.json()["data"]["register"]["session"]["accessToken"]
            async with websocket(url) as ws:
                await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
                assert (await ws.receive_json())["type"] == "connection_ack"
                await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": LOGOUT}})
                code = None
                for _ in range(3):  # the answer may still get out before the close
                    try:
                        frame = await ws.receive_json()
                    except Exception as closed:  # noqa: BLE001 (websockets' ConnectionClosed)
                        code = getattr(getattr(closed, "rcvd", None), "code", None)
                        break
                    assert frame["type"] in ("next", "complete"), frame
                assert code == 4403
            await asyncio.sleep(0.2)  # the operation task ends after the close
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [], [(r.name, r.getMessage()) for r in errors]


async def test_the_mirror_reloads_after_its_subscription_was_cut(process_factory, redis_url) -> None:  # type: ignore[no-untyped-def]
    """redis-py reconnects and resubscribes by itself; a revocation published while the subscription was down
    must still reach the mirror (it reloads the sets after resubscribing)."""
    from redis.asyncio import Redis

    services, client = await process_factory()
    token = (await _register(client))["accessToken"]
    claims = services.keyring.verify(token)
    writer = services.revocations._pubsub.connection._writer  # type: ignore[union-attr]
    sockname = writer.get_extra_info("sockname")
    admin = Redis.from_url(redis_url)
    try:
        if isinstance(sockname, tuple):  # TCP: the server drops the subscriber, as on a network cut or a restart
            await admin.execute_command("CLIENT", "KILL", "ADDR", f"{sockname[0]}:{sockname[1]}")
        else:  # a Unix socket (embedded Redis): every client's address is the socket's path; cut it from our side
            writer.transport.abort()
        # written while no subscription exists (as another process would, its message lost): the set only
        await admin.zadd(services.keys("revoked", "sid"), {claims.session_family: time.time()})
    finally:
        await admin.aclose()
    await _until(lambda: claims.session_family in services.revocations._sids)
    assert services.revocations.live
    assert _code(await _gql(client, ME, token)) == "UNAUTHENTICATED"


async def test_a_served_app_checks_revocations_from_its_mirror(
    module_database_url, redis_url, redis_prefix, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The app `rwa serve` runs (create_app without injected services, its lifespan held open by the server)
    starts the mirror, so no request pays a Redis round trip for the check; leaving the lifespan stops it."""
    app = create_app(_settings(module_database_url, redis_url, redis_prefix, tmp_path / "data"))
    services = app.state.services
    async with app.router.lifespan_context(app):
        assert services.revocations.live
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)), base_url="http://testserver"
        )
        async with client:
            session = await _register(client)
            assert _code(await _gql(client, ME, session["accessToken"])) is None
            await services.revocations.revoke_session(services.keyring.verify(session["accessToken"]).session_family)
            assert _code(await _gql(client, ME, session["accessToken"])) == "UNAUTHENTICATED"
    assert not services.revocations.live
