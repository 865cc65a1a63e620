"""`rwa serve`'s HTTP protocol (server/http_protocol.py) against real sockets: a connection whose request head does
not arrive in time is closed, a head larger than MAX_HEAD_BYTES gets 400, a body that does not arrive in time gets
408 (typed JSON) and its connection closed, with nothing executed, while other clients are served and slow but
steady uploads succeed; a websocket that never sends connection_init is closed with 4408; ordinary keep-alive
traffic is untouched; a response's head goes out in the same write as its body (streamed, chunked, HEAD and
failing answers as before). Timeouts are a fraction of a second here; the waits are bounded far above them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from core.services import Services
from core.settings import Settings
from server import http_protocol
from server.app import create_app
from server.http_protocol import TIMEOUTS_STATE_KEY, BoundedHeadProtocol, RequestTimeouts
from server.ws_protocol import BoundedWebSocketProtocol
from tests.fixtures.db import settings_values
from tests.platform.served import _InLoopServer, websocket

WAIT_S = 20.0  # an upper bound for the test to give up, far above the deadlines: not a timing assertion


async def _lifespan(timeouts: RequestTimeouts | None, receive: Any, send: Any, scope: dict[str, Any]) -> None:
    """server/app.py's lifespan, as far as the protocols see it: the timeouts in uvicorn's lifespan state."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if timeouts is not None:
                scope["state"][TIMEOUTS_STATE_KEY] = timeouts
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


def _app(timeouts: RequestTimeouts | None = None, bodies: list[bytes] | None = None) -> Any:
    """An app answering "ok" (after reading the request's body into `bodies`), whose lifespan hands the protocol
    `timeouts` as server/app.py's does."""

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            await _lifespan(timeouts, receive, send, scope)
        if scope["type"] != "http":
            return
        if bodies is not None:
            chunks = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            bodies.append(b"".join(chunks))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@contextlib.asynccontextmanager
async def _serving(app: Any = None) -> AsyncIterator[int]:
    """The port of uvicorn serving `app` on 127.0.0.1 as `rwa serve` does (its HTTP protocol and websockets)."""
    config = uvicorn.Config(
        app or _app(), host="127.0.0.1", port=0, http=BoundedHeadProtocol, ws=BoundedWebSocketProtocol, log_config=None
    )
    server = _InLoopServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing the connection (b"" for a silent close)."""
    return await asyncio.wait_for(reader.read(), WAIT_S)


async def _get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    try:
        return await _closed(reader)
    finally:
        writer.close()


def _error_of(answer: bytes) -> tuple[bytes, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, json.loads(body)["errors"][0]


async def test_a_half_sent_request_head_is_closed() -> None:
    async with _serving(_app(RequestTimeouts(head_s=0.3))) as port:
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


# --- request bodies ------------------------------------------------------------------------------------------

BODY_S = 0.5  # the tests' REQUEST_BODY_TIMEOUT_S
MIN_RATE = 200  # and REQUEST_BODY_MIN_RATE, bytes/s: the steady uploads below send ~1000 bytes/s


async def test_a_trickling_or_silent_body_gets_408_while_others_are_served() -> None:
    bodies: list[bytes] = []
    async with _serving(_app(RequestTimeouts(body_s=BODY_S, body_min_rate=MIN_RATE), bodies)) as port:
        started = time.monotonic()
        trickling = await asyncio.open_connection("127.0.0.1", port)
        trickling[1].write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        silent = await asyncio.open_connection("127.0.0.1", port)
        silent[1].write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"{" * 99)
        chunked = await asyncio.open_connection("127.0.0.1", port)
        chunked[1].write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")

        answers = [asyncio.create_task(_closed(reader)) for reader, _ in (trickling, silent, chunked)]

        async def trickle() -> None:  # a byte every 0.1 s (10 bytes/s) until the answer came
            while not answers[0].done():
                await asyncio.sleep(0.1)
                trickling[1].write(b"x")

        dripping = asyncio.create_task(trickle())
        # meanwhile other clients are served, on new connections
        for _ in range(3):
            assert (await _get(port)).startswith(b"HTTP/1.1 200")
        for answered, (_, writer) in zip(answers, (trickling, silent, chunked), strict=True):
            answer = await answered
            head, error = _error_of(answer)
            assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head, answer
            assert b"content-type: application/json" in head and b"x-content-type-options: nosniff" in head
            assert error["extensions"] == {
                "code": "BAD_USER_INPUT",
                "reason": "REQUEST_TIMEOUT",
                "timeoutSeconds": BODY_S,
            }
            writer.close()
        elapsed = time.monotonic() - started
        assert BODY_S <= elapsed < WAIT_S  # not before the deadline (timers never fire early), and not forever
        await dripping
        assert len(bodies) == 3  # the three GETs: none of the timed-out requests reached the app with a body
        assert (await _get(port)).startswith(b"HTTP/1.1 200")


async def _post_slowly(port: int, pieces: list[bytes], pause_s: float) -> bytes:
    """The answer to a POST whose body is sent in `pieces`, `pause_s` apart (no more once an answer came: as a
    client reading its socket as it sends does)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    size = sum(map(len, pieces))
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % size)
    answer = asyncio.create_task(_closed(reader))
    for piece in pieces:
        await asyncio.sleep(pause_s)
        if answer.done():
            break
        writer.write(piece)
    try:
        return await answer
    finally:
        writer.close()


async def test_slow_but_steady_uploads_succeed() -> None:
    bodies: list[bytes] = []
    timeouts = RequestTimeouts(body_s=BODY_S, body_min_rate=MIN_RATE)
    async with _serving(_app(timeouts, bodies)) as port:
        # a body in three parts, whole well within the timeout
        assert (await _post_slowly(port, [b"a" * 10, b"b" * 10, b"c" * 10], 0.02)).startswith(b"HTTP/1.1 200")
        # one that takes ~1.2 s (past REQUEST_BODY_TIMEOUT_S) at ~1000 bytes/s, five times the minimum rate
        started = time.monotonic()
        answer = await _post_slowly(port, [b"d" * 100] * 12, 0.1)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert time.monotonic() - started > BODY_S  # it did outlast the plain timeout
    assert bodies == [b"a" * 10 + b"b" * 10 + b"c" * 10, b"d" * 1200]


async def test_without_a_minimum_rate_the_body_timeout_is_final() -> None:
    async with _serving(_app(RequestTimeouts(body_s=BODY_S, body_min_rate=0), [])) as port:
        answer = await _post_slowly(port, [b"d" * 1000] * 40, 0.05)  # 20,000 bytes/s, but ~2 s in all
        assert answer.startswith(b"HTTP/1.1 408"), answer


async def test_a_body_sent_after_its_answer_does_not_hold_the_connection() -> None:
    """The app answers without reading the body (uvicorn discards the rest as it comes): a body that never ends
    still ends the connection at the deadline, instead of each byte renewing the keep-alive timeout."""
    async with _serving(_app(RequestTimeouts(body_s=BODY_S, body_min_rate=MIN_RATE))) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        assert head.startswith(b"HTTP/1.1 200") and await reader.readexactly(2) == b"ok"
        rest = asyncio.create_task(reader.read())
        started = time.monotonic()
        while not rest.done() and time.monotonic() - started < WAIT_S:
            writer.write(b"x")  # 10 bytes/s, each within uvicorn's 5 s keep-alive timeout
            await asyncio.sleep(0.1)
        with contextlib.suppress(ConnectionError):
            assert await rest == b""  # closed, with no second answer
        writer.close()


# --- websockets ---------------------------------------------------------------------------------------------


async def test_a_websocket_peer_that_reads_nothing_is_dropped() -> None:
    """It holds its frames unread (its receive buffer full): the server's sends block, then the connection is
    aborted WS_SEND_TIMEOUT_S later and the app's sending task ends, instead of waiting for good."""
    ended = asyncio.Event()
    sent = 0

    async def flooding(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        nonlocal sent
        if scope["type"] == "lifespan":
            await _lifespan(RequestTimeouts(ws_send_s=0.5), receive, send, scope)
            return
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while sent < 10_000:  # ~640 MB: far more than any socket buffers
                await send({"type": "websocket.send", "text": "x" * 65536})
                sent += 1
        except Exception:  # noqa: BLE001 - uvicorn's ClientDisconnected once the connection is gone
            pass
        ended.set()

    async with _serving(flooding) as port:
        loop = asyncio.get_running_loop()
        peer = socket.socket()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.setblocking(False)
        await loop.sock_connect(peer, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(
            peer,
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key.encode(),
        )
        assert (await asyncio.wait_for(loop.sock_recv(peer, 12), WAIT_S)) == b"HTTP/1.1 101"
        try:
            await asyncio.wait_for(ended.wait(), WAIT_S)  # and then nothing more is read
        finally:
            peer.close()
        assert 0 < sent < 10_000  # it did send until blocked, and stopped because the connection went


# --- the real app ---------------------------------------------------------------------------------------------

REGISTER = (
    'mutation($e: String!) { register(input: {email: $e, password: "s3cure-passphrase"}) { session { user { id } } } }'
)


def _served_app(services: Services, **overrides: object) -> Any:
    settings = Settings(**{**settings_values(services.settings), **overrides})  # type: ignore[arg-type]
    return create_app(settings, dataclasses.replace(services, settings=settings))


async def _post_json(port: int, payload: bytes) -> tuple[bytes, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    try:
        head, _, body = (await _closed(reader)).partition(b"\r\n\r\n")
        return head, json.loads(body)
    finally:
        writer.close()


async def test_the_api_answers_a_stalled_body_408_and_executes_nothing(services: Services) -> None:
    app = _served_app(services, REQUEST_BODY_TIMEOUT_S=BODY_S, REQUEST_BODY_MIN_RATE=0)
    email = f"slow-{uuid.uuid4().hex[:10]}@example.com"
    payload = json.dumps({"query": REGISTER, "variables": {"e": email}}).encode()
    async with _serving(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(payload), payload[:-1])  # all but the last byte, then nothing
        )
        head, answer = await _post_json(port, b'{"query": "{ __typename }"}')  # another client meanwhile
        assert head.startswith(b"HTTP/1.1 200") and answer["data"] == {"__typename": "Query"}
        head, error = _error_of(await _closed(reader))
        writer.close()
        assert head.startswith(b"HTTP/1.1 408"), head
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and error["extensions"]["reason"] == "REQUEST_TIMEOUT"
        # the stalled registration never ran: the same one, sent whole, registers the address
        head, answer = await _post_json(port, payload)
        assert head.startswith(b"HTTP/1.1 200") and answer["data"]["register"]["session"]["user"]["id"], answer


async def test_a_websocket_that_never_sends_connection_init_is_closed_4408(services: Services) -> None:
    async with _serving(_served_app(services, WS_INIT_TIMEOUT_S=0.3)) as port:
        async with websocket(f"http://127.0.0.1:{port}") as silent:
            assert await silent.close_code() == 4408


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
