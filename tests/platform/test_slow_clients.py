"""`rwa serve`'s HTTP protocol (server/http_protocol.py): a connection whose request head does not arrive in time
is closed, a head larger than MAX_HEAD_BYTES gets 400, and ordinary keep-alive traffic is untouched."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import uvicorn

from server import http_protocol
from server.http_protocol import BoundedHeadProtocol
from tests.platform.served import _InLoopServer

WAIT_S = 20.0  # an upper bound for the test to give up, far above the deadline: not a timing assertion


async def _app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def _serving() -> AsyncIterator[int]:
    config = uvicorn.Config(_app, host="127.0.0.1", port=0, http=BoundedHeadProtocol, lifespan="off", log_config=None)
    server = _InLoopServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing the connection (b"" for a silent close)."""
    return await asyncio.wait_for(reader.read(), WAIT_S)


async def test_a_half_sent_request_head_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_protocol, "HEADER_TIMEOUT_S", 0.3)
    async with _serving() as port:
        # nothing at all, half a request line, and a kept-alive connection that starts a second request and stalls
        idle = await asyncio.open_connection("127.0.0.1", port)
        partial = await asyncio.open_connection("127.0.0.1", port)
        partial[1].write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        kept = await asyncio.open_connection("127.0.0.1", port)
        kept[1].write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HT")
        assert await _closed(idle[0]) == b""
        assert await _closed(partial[0]) == b""
        answered = await _closed(kept[0])
        assert answered.startswith(b"HTTP/1.1 200") and answered.count(b"HTTP/1.1") == 1, answered
        for _, writer in (idle, partial, kept):
            writer.close()


async def test_a_huge_request_head_gets_400() -> None:
    async with _serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (http_protocol.MAX_HEAD_BYTES + 1) + b"\r\n\r\n")
        assert (await _closed(reader)).startswith(b"HTTP/1.1 400")
        writer.close()


async def test_keep_alive_requests_still_work() -> None:
    async with _serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Ok: " + b"b" * 8000 + b"\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert await reader.readexactly(2) == b"ok"
        writer.close()
