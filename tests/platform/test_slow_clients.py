"""`rwa serve`'s HTTP protocol (server/http_protocol.py): a connection whose request head does not arrive in time
is closed, a head larger than MAX_HEAD_BYTES gets 400, and ordinary keep-alive traffic is untouched; a response's
head goes out in the same write as its body (streamed, chunked, HEAD and failing answers as before)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
import uvicorn
from uvicorn.server import ServerState

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


# --- the head written with the body ----------------------------------------------------------------------------


class _Transport:
    """What the protocol writes, write by write (the socket's transport, in memory)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _full(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def _in_parts(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"he", "more_body": True})
    await send({"type": "http.response.body", "body": b"llo"})


async def _chunked(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"a", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _no_body(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 204, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def _fails_after_start(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    raise RuntimeError("the app fails before its body")


async def _exchange(app, request: bytes, protocol_class: type = BoundedHeadProtocol) -> _Transport:  # type: ignore[no-untyped-def]
    config = uvicorn.Config(app, http=protocol_class, lifespan="off", log_config=None)
    config.load()
    protocol = protocol_class(config, ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(request)
    for _ in range(50):  # the app runs in a task of its own
        if protocol.cycle is not None and (protocol.cycle.response_complete or transport.closed):
            break
        await asyncio.sleep(0)
    closed_by_server = transport.closed
    protocol.connection_lost(None)  # (closes the transport)
    transport.closed = closed_by_server
    return transport


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_the_head_goes_out_with_the_body() -> None:
    transport = await _exchange(_full, GET)
    assert len(transport.writes) == 1
    head, body = transport.writes[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 5" in head and body == b"hello"
    assert not transport.closed  # kept alive


async def test_a_body_in_parts_starts_with_the_head() -> None:
    transport = await _exchange(_in_parts, GET)
    assert len(transport.writes) == 2
    assert transport.writes[0].startswith(b"HTTP/1.1 200") and transport.writes[0].endswith(b"\r\n\r\nhe")
    assert transport.writes[1] == b"llo"


async def test_streamed_empty_head_and_failing_answers_are_written_as_before() -> None:
    chunked = await _exchange(_chunked, GET)
    assert chunked.writes[0].startswith(b"HTTP/1.1 200") and chunked.writes[0].endswith(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in chunked.writes[0] and b"".join(chunked.writes[1:]) == b"1\r\na\r\n0\r\n\r\n"
    empty = await _exchange(_no_body, GET)
    assert empty.writes[0].startswith(b"HTTP/1.1 204") and b"".join(empty.writes).endswith(b"\r\n\r\n")
    head = await _exchange(_full, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(head.writes) == 1 and head.writes[0].endswith(b"content-length: 5\r\n\r\n")  # no body, head sent
    failing = await _exchange(_fails_after_start, GET)
    assert failing.closed and b"".join(failing.writes).startswith(b"HTTP/1.1 200")  # the head, then closed


async def test_keep_alive_answers_over_a_socket_are_whole() -> None:
    async with _serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)  # pipelined
        for _ in range(3):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
            assert head.startswith(b"HTTP/1.1 200") and b"content-length: 2" in head, head
            assert await reader.readexactly(2) == b"ok"
        writer.close()


async def _many_headers(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    headers = [
        (b"Content-Type", b"application/json"),
        (b"content-length", b"2"),
        (b"x-request-id", scope["path"].encode()),
        (b"cache-control", b"no-store"),
        [b"x-list", b"a list, not a tuple"],
        (b"connection", b"keep-alive"),
    ]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


async def _bad_header(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nset-cookie: x")]})
    await send({"type": "http.response.body", "body": b""})


async def test_response_heads_are_uvicorns_bytes_also_when_reused() -> None:
    """LeanCycle reuses validated header lines: the head is byte for byte what uvicorn's own cycle writes, on the
    first response and on later ones, with per-response values (request id, length) never taken from a previous
    one."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    def without_date(head: bytes) -> bytes:
        return b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"date:"))

    for path in ("/one", "/two", "/one"):
        ours = await _exchange(_many_headers, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with_uvicorns = await _exchange(
            _many_headers, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), protocol_class=HttpToolsProtocol
        )
        assert without_date(b"".join(ours.writes)) == without_date(b"".join(with_uvicorns.writes))
        assert f"x-request-id: {path}\r\n".encode() in ours.writes[0]


async def test_a_header_value_with_a_line_break_is_still_refused() -> None:
    for _ in range(2):  # also once the other lines of a head were seen
        transport = await _exchange(_bad_header, GET)
        assert transport.closed and not any(b"set-cookie" in w for w in transport.writes)


async def test_the_access_log_line_when_uvicorn_access_logs_at_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        await _exchange(_full, GET)
    assert [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"] == [
        '127.0.0.1:50000 - "GET / HTTP/1.1" 200'
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="uvicorn.access"):
        await _exchange(_full, GET)
    assert not [r for r in caplog.records if r.name == "uvicorn.access"]
