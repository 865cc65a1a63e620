"""graphql-transport-ws: a message's `id` is a string (the protocol's `id: string`). A subscribe or complete whose
id is a number, null, an object or missing is an invalid message: the socket closes with 4400, as for any other
malformed message, instead of the operation running under an id the client cannot match."""

from __future__ import annotations

import json

import pytest

from server.app import create_app
from tests.platform.served import serving, websocket

QUERY = {"query": "{ __typename }"}
BAD_IDS = {"number": 1, "float": 1.5, "null": None, "object": {"a": 1}, "list": ["1"], "true": True}


@pytest.mark.parametrize("kind", ["subscribe", "complete"])
async def test_a_non_string_id_closes_the_socket_with_4400(services, kind: str) -> None:  # type: ignore[no-untyped-def]
    app = create_app(services.settings, services)
    cases = [{"id": v} for v in BAD_IDS.values()] + [{}]  # {}: no id at all
    cases.append({"id": "1", "type": ["subscribe"]})  # an unhashable type: still just an unknown message
    async with serving(app) as url:
        for extra in cases:
            message = {"type": kind, **extra, **({"payload": QUERY} if kind == "subscribe" else {})}
            async with websocket(url) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json())["type"] == "connection_ack"
                await ws.send_text(json.dumps(message))
                assert await ws.close_code() == 4400, message


async def test_a_string_id_still_runs(services) -> None:  # type: ignore[no-untyped-def]
    app = create_app(services.settings, services)
    async with serving(app) as url, websocket(url) as ws:
        await ws.send_json({"type": "connection_init"})
        assert (await ws.receive_json())["type"] == "connection_ack"
        await ws.send_json({"id": "7", "type": "subscribe", "payload": QUERY})
        frame = await ws.receive_json()
        assert frame["id"] == "7" and frame["type"] == "next", frame
        assert frame["payload"]["data"] == {"__typename": "Query"}, frame
        assert await ws.receive_json() == {"id": "7", "type": "complete"}


async def test_nan_and_infinity_close_the_socket_with_4400(services) -> None:  # type: ignore[no-untyped-def]
    """Not JSON (RFC 8259), though Python's json took them: a message carrying one is malformed like any other."""
    app = create_app(services.settings, services)
    async with serving(app) as url:
        for token in ("NaN", "Infinity", "1e999"):
            async with websocket(url) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json())["type"] == "connection_ack"
                await ws.send_text(
                    '{"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }", '
                    f'"variables": {{"m": {{"a": {token}}}}}}}}}'
                )
                assert await ws.close_code() == 4400, token
