"""OAuth clients against two real API processes sharing Postgres and Redis: a token obtained from one works on the
other, scopes hold on both (HTTP and websocket), and a revocation on one ends the token on the other at once,
closing its socket."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
import websockets

from core.jwt_keys import KeyRing
from models.identity import User
from tests.fixtures.app import TEST_JWT_KEY
from tests.trading.factories import make_market
from tests.trading.live import Servers, api_servers, committed_sessions, graphql

REGISTER = """mutation($o: UUID!) { registerOAuthClient(input: {name: "Live partner", ownerId: $o,
  scopes: ["market-data:read"]}) { credentials { clientSecret client { clientId } } errors { code message } } }"""


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    return module_database_url


@pytest.fixture(scope="module")
def servers(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with api_servers(database_url, redis_url, n=2, data_dir=str(tmp_path_factory.mktemp("oauth-live"))) as s:
        yield s


async def test_client_token_across_processes_and_revocation(servers: Servers, database_url: str) -> None:
    a, b = servers.urls
    keyring = KeyRing(TEST_JWT_KEY, "dev-1")
    admin_id, owner_id = uuid.uuid4(), uuid.uuid4()
    async with committed_sessions(database_url) as sf:
        async with sf() as s:
            s.add(User(id=admin_id, email=f"admin-{admin_id.hex[:8]}@example.com", password_hash="x", roles=["ADMIN"]))
            s.add(
                User(
                    id=owner_id, email=f"partner-{owner_id.hex[:8]}@example.com", password_hash="x", roles=["INVESTOR"]
                )
            )
            await s.commit()
        m = await make_market(sf)
    admin = keyring.issue(admin_id, ["ADMIN"])[0]
    async with httpx.AsyncClient(timeout=30) as http:
        created = await graphql(http, a, REGISTER, {"o": str(owner_id)}, admin)
        assert "errors" not in created and created["data"]["registerOAuthClient"]["errors"] == [], created
        client_id = created["data"]["registerOAuthClient"]["credentials"]["client"]["clientId"]
        secret = created["data"]["registerOAuthClient"]["credentials"]["clientSecret"]
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        resp = await http.post(
            b + "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
        )
        assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store", resp.text
        token = resp.json()["access_token"]
        for url in (a, b):
            assert "errors" not in await graphql(http, url, "{ markets { id } }", token=token)
            me = await graphql(http, url, "{ me { id } }", token=token)
            assert me["errors"][0]["extensions"]["reason"] == "INSUFFICIENT_SCOPE"

        ws_url = b.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            # a subscription outside the scopes is refused on the socket; one inside it runs
            await ws.send(
                json.dumps({"id": "0", "type": "subscribe", "payload": {"query": "subscription { myOrders { id } }"}})
            )
            refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert refused["type"] in ("error", "next") and "INSUFFICIENT_SCOPE" in json.dumps(refused), refused
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {
                            "query": "subscription($m: UUID!) { orderBook(marketId: $m) { sequence } }",
                            "variables": {"m": str(m.market_id)},
                        },
                    }
                )
            )
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            while first.get("id") == "0":  # the refused one's `complete`
                first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert first["type"] == "next" and first["id"] == "1" and "errors" not in first["payload"], first

            revoke = "mutation($c: String!) { revokeOAuthClient(input: {clientId: $c}) { client { revokedAt } } }"
            revoked = await graphql(http, a, revoke, {"c": client_id}, admin)
            assert "errors" not in revoked and revoked["data"]["revokeOAuthClient"]["client"]["revokedAt"], revoked
            # process B learned it before A answered: its next request is refused and the socket is closed
            ended = await graphql(http, b, "{ markets { id } }", token=token)
            assert ended["errors"][0]["extensions"]["reason"] == "SESSION_REVOKED", ended
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        again = await http.post(
            a + "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
        )
        assert again.status_code == 401 and again.json()["error"] == "invalid_client"
