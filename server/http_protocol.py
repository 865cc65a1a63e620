"""`rwa serve`'s HTTP/1.1 protocol: uvicorn's httptools protocol with a deadline for the request head and a bound
on its size, which uvicorn does not have. A connection that sent half a request line stayed open for as long as
the client liked (a slow-client flood holds every socket), and a 4 MB header was read whole. Now the request line
and headers must be complete HEADER_TIMEOUT_S after the connection opens (or after the first byte of the next
request on a kept-alive connection), within MAX_HEAD_BYTES, or the connection is closed (400 when too large).
Bodies are bounded by the app (MAX_REQUEST_BYTES / MAX_UPLOAD_BYTES); production still sits behind a proxy with
read timeouts (README, "Slow clients").

It also writes a response's head and body together: uvicorn writes the status line and headers as soon as the app
sends http.response.start, then the body, in a second write (two send() system calls and two TCP segments per
answer: ~10% of a small mutation's server CPU). The head of a response that declares a non-zero content-length is
held until its body's first write (Starlette's Response sends both at once) and written with it; streamed and
chunked responses, empty bodies, answers to HEAD and 100-continue are written as before. A held head is written before the
connection is closed (an app that never sends its body).

Per request it does no more than uvicorn's own protocol: the head deadline is armed only when a data_received ends
with a head still incomplete (a head that arrives whole, the usual case, never arms a timer: two timer handles per
request before), the head's size is counted in the parser callbacks themselves (uvicorn's bodies inlined, no
super() call per header), and a response head's header lines already validated once are reused (LeanCycle)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

HEADER_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 64 * 1024  # request line + headers; uvicorn's h11 default is 16 KiB, browsers send < 8 KiB


class HeadTooLarge(Exception):
    """Raised inside the parser's callback: httptools turns it into an HttpParserError, which uvicorn answers 400."""


class BoundedHeadProtocol(HttpToolsProtocol):
    _deadline: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _awaiting_head = False  # a request's head began and is not complete yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn's narrower type
        super().connection_made(transport)
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # a head begun in this data and not complete at its end: from now on it has HEADER_TIMEOUT_S (a timer armed
        # at its first byte would be the same moment: one callback of the event loop)
        if self._awaiting_head and self._deadline is None and not self.transport.is_closing():
            self._deadline = self.loop.call_later(HEADER_TIMEOUT_S, self._head_timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._awaiting_head = True

    def on_url(self, url: bytes) -> None:
        size = self._head_bytes + len(url)
        self._head_bytes = size
        if size > MAX_HEAD_BYTES:
            raise HeadTooLarge
        self.url += url  # uvicorn's on_url

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._head_bytes + len(name) + len(value)
        self._head_bytes = size
        if size > MAX_HEAD_BYTES:
            raise HeadTooLarge
        # uvicorn 0.55's on_header (tests/platform/test_slow_clients.py compares the headers an app receives)
        name = name.lower()
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._stop_deadline()
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous and cycle is not None:  # a request to answer (not an upgrade)
            cycle.__class__ = LeanCycle  # its task has not run yet: every send goes through LeanCycle.send
            cycle.transport = HeadWithBody(cycle.transport, cycle)  # type: ignore[assignment]  # a transport's writes

    def _start_deadline(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(HEADER_TIMEOUT_S, self._head_timed_out)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


# (name, value) -> b"name: value\r\n" of response headers that passed uvicorn's checks and carry no framing; bounded
# (cleared when full). Headers whose values change per response are not kept.
_HEAD_LINES: dict[tuple[bytes, bytes], bytes] = {}
_HEAD_LINES_MAX = 512
_PER_RESPONSE = frozenset((b"date", b"x-request-id", b"etag", b"content-length", b"transfer-encoding", b"connection"))


class LeanCycle(RequestResponseCycle):
    """uvicorn's cycle; a response's status line and headers rendered as uvicorn renders them (the same checks, the
    same bytes, the same framing decisions), with the lines of headers already seen taken from _HEAD_LINES instead
    of two regular expressions, a lower() and three comparisons per header and response."""

    async def send(self, message: Any) -> None:
        if (
            self.response_started
            or self.disconnected
            or self.flow.write_paused
            or message["type"] != "http.response.start"
        ):
            await RequestResponseCycle.send(self, message)
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        status_code = message["status"]
        # uvicorn's access log line; its arguments are only worked out when the line is logged (access_log is True
        # whenever a root handler exists, core/logging.py, while uvicorn.access logs at WARNING)
        if self.access_log and self.access_logger.isEnabledFor(logging.INFO):
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                self.scope["method"],
                get_path_with_query_string(self.scope),
                self.scope["http_version"],
                status_code,
            )
        content = [STATUS_LINE[status_code]]
        has_connection_close = False
        lines = _HEAD_LINES
        for headers in (self.default_headers, message.get("headers", [])):
            for header in headers:
                line = lines.get(header) if type(header) is tuple else None
                if line is not None:
                    content.append(line)
                    continue
                name, value = header
                if HEADER_RE.search(name):
                    raise RuntimeError("Invalid HTTP header name.")
                if HEADER_VALUE_RE.search(value):
                    raise RuntimeError("Invalid HTTP header value.")
                name = name.lower()
                if name == b"content-length" and self.chunked_encoding is None:
                    self.expected_content_length = int(value.decode())
                    self.chunked_encoding = False
                elif name == b"transfer-encoding" and value.lower() == b"chunked":
                    self.expected_content_length = 0
                    self.chunked_encoding = True
                elif name == b"connection":
                    connection = [token.lower().strip() for token in value.split(b",")]
                    if b"close" in connection:
                        self.keep_alive = False
                        has_connection_close = True
                line = b"%s: %s\r\n" % (name, value)
                if name not in _PER_RESPONSE and type(header) is tuple:
                    if len(lines) >= _HEAD_LINES_MAX:
                        lines.clear()
                    lines[header] = line
                content.append(line)
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if self.chunked_encoding is None and self.scope["method"] != "HEAD" and status_code not in (204, 304):
            self.chunked_encoding = True  # neither content-length nor transfer-encoding specified
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.transport.write(b"".join(content))


class HeadWithBody:
    """A cycle's transport that writes the response head with the body's first write (see the module's doc)."""

    __slots__ = ("_cycle", "_head", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._started = False  # the head was written or is held (the cycle's first write once the response started)

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
            return
        cycle = self._cycle
        if not self._started and cycle.response_started:
            self._started = True
            # (a HEAD request's answer has no body write: its head goes now)
            if (
                cycle.chunked_encoding is False
                and cycle.expected_content_length > 0
                and cycle.scope["method"] != "HEAD"
            ):
                self._head = data  # uvicorn wrote the whole head at once: the body follows
                return
        self._transport.write(data)

    def close(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the socket's transport
        return getattr(self._transport, name)
