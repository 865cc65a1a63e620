"""Private subscriptions against a real API process (uvicorn as `rwa serve` runs it): two users with identical
documents never receive each other's `myOrders`/`paymentUpdates`, whatever the document's shape (a root field
reached through a fragment was shared across users); two sockets of one user with different token expiries each
get their own execution, and the one whose token expires is closed with 4401 while the other keeps receiving."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets

from core.jwt_keys import KeyRing
from tests.trading.factories import make_market, make_trader
from tests.trading.live import Servers, api_servers, committed_sessions, graphql

PLACE = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id status } errors { code } } }"
MY_ORDERS = [
    "subscription { myOrders { id side price } }",
    "subscription { ...Mine } fragment Mine on Subscription { myOrders { id side price } }",
    "subscription { ... on Subscription { myOrders { id side price } } }",
]


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    return module_database_url


@pytest.fixture(scope="module")
def server(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    # one process: sharing is per process, so every socket below could have joined one execution
    with api_servers(database_url, redis_url, n=1, data_dir=str(tmp_path_factory.mktemp("private"))) as s:
        yield s


class Socket:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def recv(self, timeout: float) -> dict[str, Any]:
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if msg["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            return msg

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Whatever arrives within `seconds` (the absence of a message can only be observed over time)."""
        got: list[dict[str, Any]] = []
        with contextlib.suppress(asyncio.TimeoutError):
            while True:
                got.append(await self.recv(seconds))
        return got


@contextlib.asynccontextmanager
async def socket(url: str, token: str, query: str, variables: dict[str, Any] | None = None) -> AsyncIterator[Socket]:
    async with websockets.connect(
        url.replace("http://", "ws://") + "/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        open_timeout=10,
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})
        )
        yield Socket(ws)


def buy(m, price: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {"i": {"marketId": str(m.market_id), "side": "BUY", "type": "LIMIT", "quantity": "1", "price": price}}


def order_of(msg: dict[str, Any]) -> dict[str, Any]:
    assert msg["type"] == "next", msg
    return msg["payload"]["data"]["myOrders"]


async def _listening(server_url: str) -> None:
    """Subscriptions start asynchronously after `subscribe`: give the server's listeners a moment to be in place by
    round-tripping a request through the same process."""
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(3):
            assert (await http.get(server_url + "/healthz")).status_code == 200


async def test_two_users_never_receive_each_others_orders(server, database_url, settings) -> None:  # type: ignore[no-untyped-def]
    keyring = KeyRing.from_settings(settings)
    async with committed_sessions(database_url) as sf:
        m = await make_market(sf, maker_bps=0, taker_bps=0)
        alice = await make_trader(sf, m, cash="1000")
        bob = await make_trader(sf, m, cash="1000")
    tokens = {
        "alice": keyring.issue(alice.user_id, ["INVESTOR"])[0],
        "bob": keyring.issue(bob.user_id, ["INVESTOR"])[0],
    }
    url = server.urls[0]
    async with contextlib.AsyncExitStack() as stack:
        sockets = {
            (who, n): await stack.enter_async_context(socket(url, tokens[who], doc))
            for n, doc in enumerate(MY_ORDERS)
            for who in ("alice", "bob")
        }
        await _listening(url)
        async with httpx.AsyncClient(timeout=30) as http:
            placed = {
                "alice": (await graphql(http, url, PLACE, buy(m, "1.00"), tokens["alice"]))["data"]["placeOrder"][
                    "order"
                ],
                "bob": (await graphql(http, url, PLACE, buy(m, "2.00"), tokens["bob"]))["data"]["placeOrder"]["order"],
            }
        for (who, n), sock in sockets.items():
            first = order_of(await sock.recv(10))
            assert first["id"] == placed[who]["id"], (who, MY_ORDERS[n], first)
        for (who, n), sock in sockets.items():
            assert await sock.quiet(1.0) == [], (who, MY_ORDERS[n])  # nothing of the other user's


async def test_sockets_of_one_user_with_different_expiries(server, database_url, settings) -> None:  # type: ignore[no-untyped-def]
    """Short-lived tokens subscribe first and last: the one an execution started with must not decide for the others
    (its expiry ended everybody's stream), and a socket whose token expired must not keep receiving."""
    keyring = KeyRing.from_settings(settings)
    async with committed_sessions(database_url) as sf:
        m = await make_market(sf, maker_bps=0, taker_bps=0)
        carol = await make_trader(sf, m, cash="1000")
    long_token = keyring.issue(carol.user_id, ["INVESTOR"])[0]
    short_token = keyring.issue(carol.user_id, ["INVESTOR"], now=int(time.time()) - settings.access_token_ttl_s + 4)[0]
    url = server.urls[0]
    doc = MY_ORDERS[0]
    async with contextlib.AsyncExitStack() as stack:
        short1 = await stack.enter_async_context(socket(url, short_token, doc))
        long1 = await stack.enter_async_context(socket(url, long_token, doc))
        long2 = await stack.enter_async_context(socket(url, long_token, doc))
        short2 = await stack.enter_async_context(socket(url, short_token, doc))
        await _listening(url)
        async with httpx.AsyncClient(timeout=30) as http:
            first = (await graphql(http, url, PLACE, buy(m, "1.00"), long_token))["data"]["placeOrder"]["order"]
            for sock in (short1, long1, long2, short2):
                assert order_of(await sock.recv(10))["id"] == first["id"]
            for sock in (short1, short2):  # the short token expires: closed with 4401, nothing else before
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    extra = await sock.recv(10)
                    raise AssertionError(f"after expiry: {extra}")
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            second = (await graphql(http, url, PLACE, buy(m, "1.01"), long_token))["data"]["placeOrder"]["order"]
            for sock in (long1, long2):  # the others go on
                assert order_of(await sock.recv(10))["id"] == second["id"]


async def test_payment_updates_are_never_handed_to_another_user(server, database_url, settings) -> None:  # type: ignore[no-untyped-def]
    keyring = KeyRing.from_settings(settings)
    async with committed_sessions(database_url) as sf:
        m = await make_market(sf)
        dave = await make_trader(sf, m)
        erin = await make_trader(sf, m)
    dave_token = keyring.issue(dave.user_id, ["INVESTOR"])[0]
    erin_token = keyring.issue(erin.user_id, ["INVESTOR"])[0]
    url = server.urls[0]
    create = (
        'mutation($k: String!) { createPayment(input: {amount: "10", currency: "USD", method: BANK_TRANSFER, '
        "idempotencyKey: $k}) { payment { id state } } }"
    )
    async with httpx.AsyncClient(timeout=30) as http:
        for doc in (
            "subscription($p: UUID!) { paymentUpdates(id: $p) { paymentId state } }",
            "subscription($p: UUID!) { ...U } fragment U on Subscription { paymentUpdates(id: $p) { paymentId state } }",
        ):
            created = await graphql(http, url, create, {"k": uuid.uuid4().hex}, dave_token)
            payment = created["data"]["createPayment"]["payment"]
            variables = {"p": payment["id"]}
            async with (
                socket(url, dave_token, doc, variables) as owner,
                socket(url, erin_token, doc, variables) as other,
            ):
                assert (await owner.recv(10))["payload"]["data"]["paymentUpdates"]["state"] == "AWAITING_FUNDS"
                refused = await other.recv(10)
                assert refused["type"] == "error" or refused["payload"].get("errors"), refused
                errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
                assert errors[0]["extensions"]["code"] in ("NOT_FOUND", "FORBIDDEN"), refused
                canceled = await graphql(
                    http,
                    url,
                    "mutation($p: UUID!) { cancelPayment(id: $p) { payment { state } } }",
                    variables,
                    dave_token,
                )
                assert canceled["data"]["cancelPayment"]["payment"]["state"] == "CANCELED", canceled
                update = (await owner.recv(10))["payload"]["data"]["paymentUpdates"]
                assert update["state"] == "CANCELED", update
                leaked = [msg for msg in await other.quiet(1.0) if msg["type"] == "next"]
                assert leaked == [], (doc, leaked)


async def test_any_socket_is_closed_when_its_token_expires(server, database_url, settings) -> None:  # type: ignore[no-untyped-def]
    """Not only myOrders (whose resolver watches the expiry itself): a socket subscribed to its payment's updates or
    to shared market data is closed with 4401 at its token's expiry, by the connection."""
    keyring = KeyRing.from_settings(settings)
    async with committed_sessions(database_url) as sf:
        m = await make_market(sf)
        frank = await make_trader(sf, m)
    long_token = keyring.issue(frank.user_id, ["INVESTOR"])[0]
    short_token = keyring.issue(frank.user_id, ["INVESTOR"], now=int(time.time()) - settings.access_token_ttl_s + 4)[0]
    url = server.urls[0]
    create = (
        'mutation($k: String!) { createPayment(input: {amount: "10", currency: "USD", method: BANK_TRANSFER, '
        "idempotencyKey: $k}) { payment { id } } }"
    )
    async with httpx.AsyncClient(timeout=30) as http:
        created = await graphql(http, url, create, {"k": uuid.uuid4().hex}, long_token)
        payment = created["data"]["createPayment"]["payment"]
    updates = "subscription($p: UUID!) { paymentUpdates(id: $p) { state } }"
    trades = "subscription($m: UUID!) { trades(marketId: $m) { sequence snapshot } }"
    started = time.monotonic()
    async with (
        socket(url, short_token, updates, {"p": payment["id"]}) as mine,
        socket(url, short_token, trades, {"m": str(m.market_id)}) as market,
        socket(url, long_token, trades, {"m": str(m.market_id)}) as lasting,
    ):
        assert (await mine.recv(10))["payload"]["data"]["paymentUpdates"]["state"] == "AWAITING_FUNDS"
        for sock in (market, lasting):  # the trades stream starts with its snapshot
            assert (await sock.recv(10))["payload"]["data"]["trades"]["snapshot"] is True
        for sock in (mine, market):
            with pytest.raises(websockets.ConnectionClosed) as closed:
                extra = await sock.recv(15)
                raise AssertionError(f"after expiry: {extra}")
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert time.monotonic() - started < 12
        assert await lasting.quiet(0.5) == []  # the long-lived socket on the same shared execution stays open
        await lasting.ws.ping()
