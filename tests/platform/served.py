"""An ASGI app under uvicorn in the test's own event loop, on 127.0.0.1 at a port the OS picks, with its lifespan,
and a graphql-transport-ws client for it: real sockets for the websocket tests (httpx.ASGITransport has no websockets;
starlette's TestClient warns that it needs httpx2, and runs the app on a loop of its own).

    async with serving(create_app(settings, services)) as url, websocket(url) as ws:
        await ws.send_json({"type": "connection_init"})
        assert (await ws.receive_json())["type"] == "connection_ack"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from cli.main import WEBSOCKETS

# a bound on every wait, so that a missing frame fails the test instead of hanging it
RECEIVE_TIMEOUT_S = 30


class _InLoopServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGINT stays pytest's


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """`http://127.0.0.1:<port>` while uvicorn serves `app` (with `rwa serve`'s websocket implementation)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws=WEBSOCKETS, lifespan="on", log_config=None, timeout_graceful_shutdown=5
    )
    server = _InLoopServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started (the app's lifespan failed?)")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class Socket:
    """A websocket client speaking JSON text frames."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send_json(self, message: object) -> None:
        await self.connection.send(json.dumps(message))

    async def send_text(self, text: str) -> None:
        await self.connection.send(text)

    async def receive_text(self) -> str:
        frame = await asyncio.wait_for(self.connection.recv(), RECEIVE_TIMEOUT_S)
        return frame if isinstance(frame, str) else frame.decode()

    async def receive_json(self) -> Any:
        return json.loads(await self.receive_text())

    async def close_code(self) -> int | None:
        """The code of the close frame the server sends next (a message arriving first fails the test)."""
        try:
            message = await asyncio.wait_for(self.connection.recv(), RECEIVE_TIMEOUT_S)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
        raise AssertionError(f"a message instead of a close: {message!r}")


@contextlib.asynccontextmanager
async def websocket(base_url: str, path: str = "/graphql", graphql: bool = True) -> AsyncIterator[Socket]:
    """A websocket to `path` of a `serving` URL (subprotocol graphql-transport-ws unless `graphql` is false)."""
    url = base_url.replace("http://", "ws://", 1) + path
    subprotocols = ["graphql-transport-ws"] if graphql else None
    async with connect(url, subprotocols=subprotocols, open_timeout=RECEIVE_TIMEOUT_S) as connection:
        yield Socket(connection)
