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
connection is closed (an app that never sends its body)."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

HEADER_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 64 * 1024  # request line + headers; uvicorn's h11 default is 16 KiB, browsers send < 8 KiB


class HeadTooLarge(Exception):
    """Raised inside the parser's callback: httptools turns it into an HttpParserError, which uvicorn answers 400."""


class BoundedHeadProtocol(HttpToolsProtocol):
    _deadline: asyncio.TimerHandle | None = None
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn's narrower type
        super().connection_made(transport)
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._start_deadline()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_deadline()
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous and cycle is not None:  # a request to answer (not an upgrade)
            cycle.transport = HeadWithBody(cycle.transport, cycle)  # type: ignore[assignment]  # a transport's writes

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise HeadTooLarge

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
