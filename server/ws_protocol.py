"""`rwa serve`'s websocket protocol: uvicorn's websockets-sansio with a bound on how long a peer may leave the
server's frames unread.

A subscriber that stops reading (a slow or hostile consumer) is already bounded in memory: shared subscriptions
keep a bounded buffer per subscriber and drop its oldest results (schema/shared_subscriptions.py), and any other
send waits while the transport's write buffer is above its high-water mark (64 KiB) instead of growing it. It was
not bounded in time: with a peer that never reads, the kernel's send buffer fills, uvicorn pauses writing, every
operation of the socket waits in send() for good, and the keep-alive ping times out and closes the transport,
which asyncio does only once its buffer has drained, i.e. never (measured: 44 frames of 64 KiB sent, then the
connection, its buffer and its tasks still held after the ping timeout, as long as the peer kept the TCP connection
open). Now a connection whose writing stays paused WS_SEND_TIMEOUT_S, or whose ping timed out with frames still
unsent, is aborted after that long: its buffers are dropped and its operations end (their send() returns, the
socket is gone). Nothing is added per frame: the timer is armed only when asyncio pauses writing."""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from server.http_protocol import DEFAULT_TIMEOUTS, TIMEOUTS_STATE_KEY

log = logging.getLogger("rwa.server")


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    _stalled: asyncio.TimerHandle | None = None

    def _send_timeout_s(self) -> float:
        return self.app_state.get(TIMEOUTS_STATE_KEY, DEFAULT_TIMEOUTS).ws_send_s

    def _arm(self) -> None:
        if self._stalled is None and not self.disconnected:
            self._stalled = self.loop.call_later(self._send_timeout_s(), self._abort_stalled)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._arm()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stalled is not None and not self.transport.is_closing():
            self._stalled.cancel()
            self._stalled = None

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        # a peer that answers no ping may read nothing either: what is still buffered (the close frame among it)
        # would keep the closing transport open for good
        if self.transport.get_write_buffer_size():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        super().connection_lost(exc)

    def _abort_stalled(self) -> None:
        self._stalled = None
        if not self.disconnected:
            log.info("websocket aborted: its peer left %.0f s of frames unread", self._send_timeout_s())
            self.transport.abort()  # connection_lost follows: pending send() calls return, the app's tasks end
