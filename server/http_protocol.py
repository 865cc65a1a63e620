"""`rwa serve`'s HTTP/1.1 protocol: uvicorn's httptools protocol with deadlines for the request head and body and a
bound on the head's size, which uvicorn does not have. A connection that sent half a request line stayed open for as
long as the client liked (a slow-client flood holds every socket), a 4 MB header was read whole, and a request whose
head declared a body (`Content-Length: 1000000`, or chunked) and then sent it a byte at a time, or not at all, held
its connection, its request task and its buffers forever. Now:

- the request line and headers must be complete REQUEST_HEAD_TIMEOUT_S after the connection opens (or after the
  first byte of the next request on a kept-alive connection), within MAX_HEAD_BYTES, or the connection is closed
  (400 when too large);
- the body must be complete REQUEST_BODY_TIMEOUT_S after its head, or keep arriving at REQUEST_BODY_MIN_RATE
  bytes/s on average since the head (checked every REQUEST_BODY_TIMEOUT_S): else the request gets 408 with a typed
  JSON error (`BAD_USER_INPUT`, `reason: REQUEST_TIMEOUT`) when its answer has not started, and the connection is
  closed. The app's receive() then returns http.disconnect (Starlette's ClientDisconnect): whatever reads the body
  (strawberry, multipart uploads, /oauth/token, ...) stops there, nothing is executed, and what the app sends
  afterwards is dropped. Bodies are also bounded in size by the app (MAX_REQUEST_BYTES / MAX_UPLOAD_BYTES).

The timeouts come from the app's settings (server/app.py's lifespan puts RequestTimeouts in uvicorn's lifespan
state, which every connection's protocol sees); without them (an app without that lifespan), the defaults below.

It also writes a response's head and body together: uvicorn writes the status line and headers as soon as the app
sends http.response.start, then the body, in a second write (two send() system calls and two TCP segments per
answer: ~10% of a small mutation's server CPU). The head of a response that declares a non-zero content-length is
held until its body's first write (Starlette's Response sends both at once) and written with it; streamed and
chunked responses, empty bodies, answers to HEAD and 100-continue are written as before. A held head is written before the
connection is closed (an app that never sends its body).

Per request it does no more than uvicorn's own protocol: a deadline is armed only when a data_received ends with a
head, or a body, still incomplete (a request that arrives whole, the usual case, never arms a timer: two timer
handles per request before), the head's size is counted in the parser callbacks themselves (uvicorn's bodies
inlined, no super() call per header), and a response head's header lines already validated once are reused
(LeanCycle)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from server.middleware import BODY_TIMED_OUT_SCOPE_KEY, NO_STORE, SECURITY_HEADERS

MAX_HEAD_BYTES = 64 * 1024  # request line + headers; uvicorn's h11 default is 16 KiB, browsers send < 8 KiB
LINGER_S = 1.0  # after a 408: how long the rest of the body is still read (and dropped) before the socket closes
TIMEOUTS_STATE_KEY = "rwa.request_timeouts"  # in uvicorn's lifespan state (server/app.py)


@dataclass(frozen=True)
class RequestTimeouts:
    """REQUEST_HEAD_TIMEOUT_S, REQUEST_BODY_TIMEOUT_S, REQUEST_BODY_MIN_RATE and WS_SEND_TIMEOUT_S
    (core/settings.py)."""

    head_s: float = 10.0
    body_s: float = 30.0
    body_min_rate: int = 64 * 1024  # bytes/s on average since the head; 0: body_s is final
    ws_send_s: float = 30.0  # a websocket's frames left unread this long: aborted (server/ws_protocol.py)
    answer_408: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rate = f", or at least {self.body_min_rate} bytes/s" if self.body_min_rate else ""
        body = json.dumps(
            {
                "data": None,
                "errors": [
                    {
                        "message": f"the request body did not arrive in time (whole within {self.body_s:g} s{rate})",
                        "extensions": {
                            "code": "BAD_USER_INPUT",
                            "reason": "REQUEST_TIMEOUT",
                            "timeoutSeconds": self.body_s,
                        },
                    }
                ],
            }
        ).encode()
        # the headers RequestContextMiddleware gives every answer (security headers, no-store)
        head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n" % len(body)
        head += b"".join(b"%s: %s\r\n" % header for header in (*SECURITY_HEADERS, NO_STORE))
        object.__setattr__(self, "answer_408", head + b"\r\n" + body)  # after the status line and default headers

    @classmethod
    def of(cls, settings: Any) -> RequestTimeouts:
        return cls(
            settings.request_head_timeout_s,
            settings.request_body_timeout_s,
            settings.request_body_min_rate,
            settings.ws_send_timeout_s,
        )


DEFAULT_TIMEOUTS = RequestTimeouts()


class HeadTooLarge(Exception):
    """Raised inside the parser's callback: httptools turns it into an HttpParserError, which uvicorn answers 400."""


class BoundedHeadProtocol(HttpToolsProtocol):
    _timeouts = DEFAULT_TIMEOUTS
    _deadline: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _awaiting_head = False  # a request's head began and is not complete yet
    _body_deadline: asyncio.TimerHandle | None = None
    _body_started = 0.0  # loop time the body's deadline was armed (its head's end)
    _body_bytes = 0  # bytes received since then

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn's narrower type
        super().connection_made(transport)
        self._timeouts = self.app_state.get(TIMEOUTS_STATE_KEY, DEFAULT_TIMEOUTS)
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        self._stop_body_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # a head begun in this data and not complete at its end: from now on it has head_s (a timer armed at its
        # first byte would be the same moment: one callback of the event loop)
        if self._awaiting_head and self._deadline is None and not self.transport.is_closing():
            self._deadline = self.loop.call_later(self._timeouts.head_s, self._head_timed_out)
        # likewise a body still incomplete at the end of the data that completed its head
        cycle = self.cycle
        if cycle is not None and cycle.more_body:
            if self._body_deadline is not None:
                self._body_bytes += len(data)
            elif not cycle.disconnected and not self.transport.is_closing():
                self._body_started = self.loop.time()
                self._body_bytes = 0
                self._body_deadline = self.loop.call_later(self._timeouts.body_s, self._body_timed_out)

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
        if self._body_deadline is not None:  # the previous request's body deadline (its body is complete)
            self._stop_body_deadline()
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous and cycle is not None:  # a request to answer (not an upgrade)
            cycle.__class__ = LeanCycle  # its task has not run yet: every send goes through LeanCycle.send
            cycle.transport = HeadWithBody(cycle.transport, cycle)  # type: ignore[assignment]  # a transport's writes

    def _start_deadline(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self._timeouts.head_s, self._head_timed_out)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _stop_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_timed_out(self) -> None:
        self._body_deadline = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        timeouts = self._timeouts
        if timeouts.body_min_rate and self._body_bytes >= timeouts.body_min_rate * (
            self.loop.time() - self._body_started
        ):
            # still arriving at the minimum average rate (a large upload on a slow link): checked again later
            self._body_deadline = self.loop.call_later(timeouts.body_s, self._body_timed_out)
            return
        cast(dict[str, Any], cycle.scope)[BODY_TIMED_OUT_SCOPE_KEY] = True  # (uvicorn's HTTPScope names its keys)
        # the app's receive() returns http.disconnect from now on and its sends are dropped
        cycle.disconnected = True
        cycle.message_event.set()
        transport = self.transport
        # the answer, unless the app's began (or a pipelined request's, which would be interleaved with it)
        if cycle.response_started or self.pipeline or not transport.can_write_eof():
            transport.close()
            return
        cycle.response_started = cycle.response_complete = True
        default_headers = b"".join(b"%s: %s\r\n" % header for header in self.server_state.default_headers)
        transport.write(STATUS_LINE[408] + default_headers + timeouts.answer_408)
        # then a FIN, and what the client still sends is read and dropped for a moment before closing: a socket
        # closed with unread data resets the connection, and the client's kernel may drop the answer unread
        transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_S, transport.close)


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
