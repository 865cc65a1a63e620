"""The graphql-transport-ws side of shared subscriptions (schema/shared_subscriptions.py runs each shareable
subscription once per process): the handler that hands each shared stream the uvicorn protocol of its socket, so
the pump can write frames to the transport itself, and the adapter that serializes a shared `next` payload once.

A socket signed in with an access token is closed with 4401 when the token expires (`SharedDeliveryHandler`), its
operations stopped first: nothing more is sent on the authority of an expired token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from starlette.websockets import WebSocketDisconnect
from starlette.websockets import WebSocketDisconnected as SocketAlreadyClosed
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from core import metrics
from core.errors import ErrorCode
from schema.shared_subscriptions import SharedStream
from server.context import Context
from server.middleware import RAW_SEND_SCOPE_KEY

TOKEN_EXPIRED_CLOSE_CODE = 4401  # graphql-transport-ws "Unauthorized"


def direct_protocol(websocket: Any) -> WebSocketsSansIOProtocol | None:
    """The uvicorn websockets-sansio protocol behind a strawberry websocket adapter, if that is what serves it
    (the middleware put its ASGI send, a bound method of the protocol, in the scope); else None."""
    scope = getattr(getattr(websocket, "ws", None), "scope", None) or {}
    proto = getattr(scope.get(RAW_SEND_SCOPE_KEY), "__self__", None)
    return proto if isinstance(proto, WebSocketsSansIOProtocol) else None


class SharedBytesWebSocketAdapter(ASGIWebSocketAdapter):
    """Serialize a shared `next` payload once; each subscriber's frame only differs by its operation id."""

    _cache: OrderedDict[int, tuple[Any, str]] = OrderedDict()

    async def send_json(self, message: Mapping[str, object]) -> None:
        payload = message.get("payload")
        if message.get("type") == "next" and isinstance(payload, dict) and set(payload) == {"data"}:
            data = payload["data"]
            cached = self._cache.get(id(data))
            if cached is None or cached[0] is not data:
                cached = (data, json.dumps({"data": data}, separators=(",", ":")))
                self._cache[id(data)] = cached
                if len(self._cache) > 256:
                    self._cache.popitem(last=False)
            frame = '{"id":' + json.dumps(message["id"]) + ',"type":"next","payload":' + cached[1] + "}"
            try:
                await self.ws.send_text(frame)
            except WebSocketDisconnect as exc:
                raise WebSocketDisconnected from exc
            return
        await super().send_json(message)


class SharedDeliveryHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws handler that lets shared subscriptions deliver their results directly; an operation
    that is completed or canceled stops its direct delivery at once (before its task sees the cancellation).
    A socket signed in with an access token is closed with 4401 when the token expires, its operations (whatever
    they subscribe to) stopped first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct: dict[Any, SharedStream] = {}  # operation -> its shared stream, while delivering
        self._expiry: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        expires_at = getattr(getattr(self.context, "viewer", None), "expires_at", None)
        if self.connection_acknowledged and expires_at is not None and self._expiry is None:
            self._expiry = asyncio.create_task(self._close_at(float(expires_at)))

    async def _close_at(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        for operation_id in list(self.operations):
            self._stop_direct(operation_id)
            await self.cleanup_operation(operation_id)
        metrics.WEBSOCKETS_CLOSED_BY_SERVER.labels(str(TOKEN_EXPIRED_CLOSE_CODE)).inc()
        with contextlib.suppress(Exception):  # the peer may be gone already
            await self.websocket.close(code=TOKEN_EXPIRED_CLOSE_CODE, reason="access token expired")

    async def shutdown(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        await super().shutdown()

    async def handle(self) -> None:
        metrics.WEBSOCKETS_OPENED.inc()
        metrics.WEBSOCKETS_OPEN.inc()
        try:
            await super().handle()
        finally:
            metrics.WEBSOCKETS_OPEN.dec()

    async def _send_result_stream(self, operation, result_source):
        kind = "shared" if isinstance(result_source, SharedStream) else "private"
        metrics.SUBSCRIPTIONS_STARTED.labels(kind).inc()
        metrics.SUBSCRIPTIONS_ACTIVE.labels(kind).inc()
        try:
            if isinstance(result_source, SharedStream):
                self._direct[operation] = result_source
                try:
                    await result_source.deliver(operation, self, direct_protocol(self.websocket))
                finally:
                    self._direct.pop(operation, None)
                return
            await super()._send_result_stream(operation, result_source)
        finally:
            metrics.SUBSCRIPTIONS_ACTIVE.labels(kind).dec()

    def _stop_direct(self, operation_id: str) -> None:
        stream = self._direct.pop(self.operations.get(operation_id), None)
        if stream is not None:
            stream.stop_direct()

    def forget_id(self, id: str) -> None:  # noqa: A002 (strawberry's signature)
        self._stop_direct(id)
        super().forget_id(id)

    async def cleanup_operation(self, operation_id: str) -> None:
        self._stop_direct(operation_id)
        await super().cleanup_operation(operation_id)

    async def handle_task_exception(self, error: Exception) -> None:
        """An operation whose socket closed under it (the peer left, or the server closed it: 4403 when its session
        was revoked, by a `logout` sent on this very socket, say) has nobody to answer: strawberry logged each one
        as an ERROR with its traceback ("Exception in worker task"), one per operation a client can make fail."""
        if isinstance(error, (SocketAlreadyClosed, WebSocketDisconnected, WebSocketDisconnect)):
            return
        await super().handle_task_exception(error)

    async def send_message(self, message: Any) -> None:
        """`error` frames strawberry makes itself (the per-connection operation limit) get a code like every other
        error: RATE_LIMITED for the limit, BAD_USER_INPUT for any other operation refused before it ran."""
        if message.get("type") == "error":
            for err in message.get("payload") or ():
                if isinstance(err, dict) and "code" not in (err.get("extensions") or {}):
                    code = (
                        ErrorCode.RATE_LIMITED
                        if err.get("message") == "Subscription limit reached"
                        else ErrorCode.BAD_USER_INPUT
                    )
                    err["extensions"] = {**(err.get("extensions") or {}), "code": code.value}
        await super().send_message(message)
