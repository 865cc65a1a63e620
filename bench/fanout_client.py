"""A deliberately cheap graphql-transport-ws subscriber for fan-out benchmarks (bench/trading_fanout.py).

One asyncio Protocol per socket, no websocket library: the HTTP upgrade and the few client frames are written by
hand (masked with a zero key, which RFC 6455 allows), server frames are split by their length header and only the
`createdAt` of a `next` message is read, so thousands of subscribers cost the client processes little and the
server is what the benchmark measures. Latency = receive time - the event's `createdAt` (publish time).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

_MARKER = b'"createdAt":"'


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (mask key 0000: the payload is sent as is)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def _single_frame_length(data: bytes) -> int:
    """The length of the whole frame that starts `data`, as far as its first bytes tell (0 if they do not)."""
    n = data[1] & 0x7F
    if n < 126:
        return 2 + n
    if n == 126 and len(data) >= 4:
        return 4 + int.from_bytes(data[2:4], "big")
    return 0


class Stats:
    def __init__(self) -> None:
        self.received = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.sent_at: dict[bytes, float] = {}  # createdAt text -> epoch seconds (shared by all sockets)
        self.stopping = False

    def record(self, payload: bytes, now: float) -> None:
        at = payload.find(_MARKER)
        if at < 0:
            return
        start = at + len(_MARKER)
        stamp = payload[start : payload.index(b'"', start)]
        sent = self.sent_at.get(stamp)
        if sent is None:
            sent = self.sent_at[stamp] = datetime.fromisoformat(stamp.decode()).timestamp()
        self.received += 1
        self.latencies.append(now - sent)


class Subscriber(asyncio.Protocol):
    def __init__(
        self, stats: Stats, host: str, path: str, init: bytes, subscribe: bytes, on_ready: Callable[[bool], None]
    ) -> None:
        self.stats, self.host, self.path = stats, host, path
        self.init, self.subscribe, self.on_ready = init, subscribe, on_ready
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False
        self.acked = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"  # type: ignore[union-attr]
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if (
            not self.buf
            and self.acked
            and len(data) > 3
            and data[0] == 0x81
            and len(data) == _single_frame_length(data)
        ):
            self.stats.record(data, now)  # the usual case: exactly one complete text frame (the header has no '"')
            return
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if b" 101 " not in buf[:end].split(b"\r\n", 1)[0]:
                self._fail()
                return
            self.upgraded = True
            buf = buf[end + 4 :]
            self.transport.write(client_frame(self.init))  # type: ignore[union-attr]
        while len(buf) >= 2:
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, head = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, head = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < head + n:
                break
            payload, buf = buf[head : head + n], buf[head + n :]
            if opcode == 0x1:
                if self.acked:
                    self.stats.record(payload, now)
                elif b'"connection_ack"' in payload:
                    self.acked = True
                    self.transport.write(client_frame(self.subscribe))  # type: ignore[union-attr]
                    self.on_ready(True)
            elif opcode == 0x9:  # uvicorn's keepalive ping
                self.transport.write(client_frame(payload, 0xA))  # type: ignore[union-attr]
            elif opcode == 0x8:
                self._fail()
                return
        self.buf = buf

    def _fail(self) -> None:
        if self.transport is not None:
            self.transport.close()  # connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        if self.acked and not self.stats.stopping:
            self.stats.errors += 1  # lost after subscribing
        self.on_ready(False)  # no-op once ready
        if not self.closed.done():
            self.closed.set_result(None)


async def run_subscribers(
    url: str,
    token: str,
    query: str,
    variables: dict[str, object],
    n: int,
    on_ready: Callable[[bool], None],
    stop: Callable[[], bool],
) -> Stats:
    """Open n subscriptions (at most 100 handshakes at a time), keep them until stop() is true."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    stats = Stats()
    init = json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}).encode()
    subscribe = json.dumps(
        {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}
    ).encode()
    sem = asyncio.Semaphore(100)
    protocols: list[Subscriber] = []

    async def open_one() -> None:
        async with sem:
            handshake: asyncio.Future[bool] = loop.create_future()

            def ready(ok: bool) -> None:
                if not handshake.done():  # report each socket once
                    handshake.set_result(ok)
                    on_ready(ok)
                    if not ok:
                        stats.errors += 1

            try:
                _, proto = await loop.create_connection(
                    lambda: Subscriber(stats, parts.netloc, parts.path or "/", init, subscribe, ready),
                    parts.hostname,
                    parts.port,
                )
                protocols.append(proto)
                await asyncio.wait_for(handshake, 60)
            except (TimeoutError, OSError):
                ready(False)

    openers = [asyncio.create_task(open_one()) for _ in range(n)]
    while not stop():
        await asyncio.sleep(0.2)
    stats.stopping = True
    for t in openers:
        t.cancel()
    for p in protocols:
        if p.transport is not None:
            p.transport.close()
    if protocols:
        await asyncio.wait([p.closed for p in protocols], timeout=10)
    return stats
