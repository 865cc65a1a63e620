"""Execute each shareable subscription once per process per distinct operation, whatever the number of subscribers.

Only operations whose root fields are all declared shared where they are defined (schema/sharing.py, read into
`shared_fields`) are shared. Every other subscription (private is the default: `myOrders`, `paymentUpdates`,
anything undeclared, and any document reaching its root field through a fragment) runs once per subscriber, with
that socket's own caller. Subscribers whose shareable operations are identical — same document, variables and
operation name, the same roles (so authorization decides the same), signed in or not, token or read-only API key —
share one execution: the resolver runs once per event, graphql-core completes the result once, and it is
serialized once for all of them.

Delivery: over graphql-transport-ws (`SharedDeliveryHandler`, server/shared_subscriptions.py) on uvicorn's
websockets-sansio protocol (what `rwa serve` runs), the pump writes each result itself to the transport of every
subscriber that is idle (nothing queued): the `next` payload is serialized once per event, each distinct operation
id's complete websocket frame is built once per event, and a delivered message costs one `transport.write` of that
shared frame — no task wake-up, no await, no per-subscriber encoding. A subscriber whose transport is above its
high-water mark (uvicorn paused writing) is slow: its results go to its bounded buffer, which its operation task
drains through the ordinary ASGI send (as it does for any other consumer of the stream, and on other servers): a
slow subscriber loses its oldest messages and never blocks the others or the source. For fields that start with a
snapshot (`snapshot_fields`, e.g. an order book), a subscriber that joins late or lost messages first gets a fresh
snapshot (the same document executed with `context.snapshot_only = True`), and deltas older than that snapshot's
`sequence` are skipped."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from graphql import DocumentNode, FieldNode, OperationDefinitionNode, OperationType
from strawberry.types.execution import ExecutionResult, PreExecutionError
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

_END = object()
StreamFactory = Callable[[Any], Awaitable[AsyncGenerator[Any, None]]]


def subscription_fields(document: DocumentNode | None, operation_name: str | None) -> tuple[str, ...] | None:
    """Root field names of the selected operation if it is a subscription, else None. The document comes from the
    schema's bounded DocumentCache (parsed once per distinct text, with the token limit; an lru_cache here kept 512
    full texts of any size)."""
    if document is None:
        return None
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None or (definition.name and definition.name.value == operation_name)
        ):
            if definition.operation is not OperationType.SUBSCRIPTION:
                return None
            selections = definition.selection_set.selections
            # a fragment spread's name is not a field's, and an inline fragment has none: such documents are
            # never shared (their field could be private)
            fields = [sel for sel in selections if isinstance(sel, FieldNode)]
            if len(fields) != len(selections):
                return None
            return tuple(sel.name.value for sel in fields)
    return None


@dataclass
class _Shared:
    key: Hashable
    subscribers: set[SharedStream] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    first: Any = None  # a pre-execution error, replayed to late joiners


class SharedSubscriptions:
    def __init__(
        self,
        *,
        shared_fields: frozenset[str] = frozenset(),
        snapshot_fields: frozenset[str] = frozenset(),
        queue_size: int = 128,
    ) -> None:
        self.shared_fields = shared_fields
        self.snapshot_fields = snapshot_fields
        self.queue_size = queue_size
        self._streams: dict[Hashable, _Shared] = {}
        self.executions_started = 0  # observable in tests and benchmarks
        self.direct_sends = 0  # frames the pump wrote to transports itself (no wake-up of the subscriber's task)

    def shareable(self, fields: tuple[str, ...] | None) -> TypeGuard[tuple[str, ...]]:
        """True when the operation selects root fields that are all declared shared (private is the default)."""
        return fields is not None and bool(fields) and all(f in self.shared_fields for f in fields)

    def key(
        self,
        query: str,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
        fields: tuple[str, ...],
        viewer: Any,
    ) -> Hashable:
        return (
            query,
            json.dumps(variables or {}, sort_keys=True, default=str),
            operation_name,
            tuple(sorted(getattr(viewer, "roles", ()))),
            bool(getattr(viewer, "user_id", None)),
            # a read-only API key is refused what its owner's token may do: never share across the two
            bool(getattr(viewer, "read_only", False)),
            # an OAuth client's scopes decide which root fields it may run (schema/scopes.py)
            tuple(sorted(getattr(viewer, "scopes", None) or ())),
            getattr(viewer, "scopes", None) is None,
        )

    def active(self) -> int:
        return len(self._streams)

    async def join(self, key: Hashable, fields: tuple[str, ...], context: Any, start: StreamFactory) -> SharedStream:
        shared = self._streams.get(key)
        late = shared is not None
        if shared is None:
            shared = self._streams[key] = _Shared(key)
        me = SharedStream(self, shared, fields, context, start, late, any(f in self.snapshot_fields for f in fields))
        shared.subscribers.add(me)
        if shared.task is None:
            self.executions_started += 1
            shared.task = asyncio.create_task(self._pump(shared, start, context))
        return me

    async def _pump(self, shared: _Shared, start: StreamFactory, context: Any) -> None:
        source = await start(context)
        try:
            async for result in source:
                if getattr(result, "data", None) is None and shared.first is None:
                    shared.first = result
                # an ordinary result goes straight to the transports of idle subscribers: serialized once, one
                # frame per distinct operation id (see send_now)
                direct = type(result) is ExecutionResult
                tail: bytes | None = None
                frames: dict[bytes, bytes] = {}
                sent = 0
                for sub in tuple(shared.subscribers):
                    if direct and sub.fast:
                        if tail is None:
                            tail = (',"type":"next","payload":' + next_payload_json(result) + "}").encode()
                        sent += sub.send_now(result, tail, frames)
                    else:
                        sub.offer(result)
                self.direct_sends += sent
        finally:
            with contextlib.suppress(Exception):
                await source.aclose()
            for sub in tuple(shared.subscribers):
                sub.offer(_END)
            if self._streams.get(shared.key) is shared:
                del self._streams[shared.key]

    def _leave(self, shared: _Shared, me: SharedStream) -> None:
        shared.subscribers.discard(me)
        if not shared.subscribers and shared.task is not None and not shared.task.done():
            shared.task.cancel()
            if self._streams.get(shared.key) is shared:
                del self._streams[shared.key]


class SharedStream:
    """One subscriber of a shared execution: an async iterator of results over a bounded buffer (the oldest
    result is dropped when it is full). Run by `deliver` instead (the graphql-transport-ws handler does) on a
    websockets-sansio connection, the pump writes each result to this subscriber's transport itself while the
    subscriber is idle (`send_now`); once its transport is paused (a slow reader), results queue here and its
    task sends them through the ordinary ASGI send, which waits until the transport drains."""

    def __init__(
        self,
        owner: SharedSubscriptions,
        shared: _Shared,
        fields: tuple[str, ...],
        context: Any,
        start: StreamFactory,
        late: bool,
        snapshotting: bool,
    ) -> None:
        self._owner, self._shared, self._fields = owner, shared, fields
        self._context, self._start, self._late, self._snapshotting = context, start, late, snapshotting
        self._buffer: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        self._floor: int | None = None  # deltas up to this sequence are in the snapshot already sent
        self._started = False
        self._closed = False
        # direct delivery (deliver): the connection's protocol and transport, this operation's frame prefix
        self.fast = False
        self._proto: WebSocketsSansIOProtocol | None = None
        self._transport: Any = None
        self._head = b""

    # --- fed by the pump
    def offer(self, item: Any) -> None:
        if item is not _END and len(self._buffer) >= self._owner.queue_size:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def send_now(self, result: Any, tail: bytes, frames: dict[bytes, bytes]) -> bool:
        """Write one result to the transport from the pump; only called while `fast` (idle, nothing queued).
        `tail` is the serialized rest of the `next` message after the id; `frames` caches, for this event, the
        complete websocket frame per operation id prefix (most subscribers share one). True if written."""
        if self._floor is not None:
            seq = _sequence(result, self._fields)
            if seq is not None and seq <= self._floor:
                return False
        proto = self._proto
        if proto is None or proto.close_sent:  # (None: not while fast) the server is closing this connection
            return False  # (and ending its operations)
        # uvicorn closes the transport when the peer closes, breaks the protocol or is gone
        if not proto.writable.is_set() or self._transport.is_closing():
            # above the high-water mark (a slow reader), or the peer is gone: its task takes over, in order, and
            # waits for the transport to drain or ends the operation with the connection
            self.fast = False
            self.offer(result)
            return False
        frame = frames.get(self._head)
        if frame is None:
            frame = frames[self._head] = text_frame(self._head + tail)
        self._transport.write(frame)
        return True

    def stop_direct(self) -> None:
        """The operation was completed or canceled (its task may not have run yet): the pump writes no more."""
        self.fast = False
        self._proto = None

    # --- read by the subscriber
    def __aiter__(self) -> SharedStream:
        return self

    async def __anext__(self) -> Any:
        item = await self._next()
        if item is _END:
            raise StopAsyncIteration
        return item

    async def _next(self) -> Any:
        """The next result for this subscriber, or _END at the end."""
        if self._closed:
            return _END
        if not self._started:
            self._started = True
            if self._late and self._shared.first is not None:
                self._closed = True  # replay the execution's error, then end
                return self._shared.first
            if self._late and self._snapshotting:
                return await self._resnapshot(clear=False) or await self._next()
        while True:
            if not self._buffer:
                self._waiter = asyncio.get_running_loop().create_future()
                # idle with nothing queued: the pump may write to the transport itself
                self.fast = self._proto is not None
                try:
                    await self._waiter
                finally:
                    self.fast = False
                    self._waiter = None
                continue
            if self.dropped and self._snapshotting:  # what is queued is older than a fresh snapshot
                snap = await self._resnapshot(clear=True)
                if snap is not None:
                    return snap
                continue
            item = self._buffer.popleft()
            if item is _END:
                self._closed = True
                return _END
            if self._floor is not None:
                seq = _sequence(item, self._fields)
                if seq is not None and seq <= self._floor:
                    continue
            return item

    async def _resnapshot(self, *, clear: bool) -> Any:
        self.dropped = 0
        if clear:
            ended = _END in self._buffer
            self._buffer.clear()
            if ended:
                self._buffer.append(_END)
                return None
        snap = await _snapshot(self._context, self._start)
        if snap is not None:
            self._floor = _sequence(snap, self._fields)
        return snap

    async def deliver(self, operation: Any, handler: Any, proto: WebSocketsSansIOProtocol | None) -> None:
        """Send this subscriber's results as `next` messages of `operation` (strawberry's graphql-transport-ws
        Operation) until the stream ends; what `BaseGraphQLTransportWSHandler._send_result_stream` does, with
        ordinary results written by the pump directly (see `send_now`) when the server's protocol allows: `proto`
        is the uvicorn websockets-sansio protocol serving the socket, or None (server/shared_subscriptions.py)."""
        self._proto = proto
        self._transport = self._proto.transport if self._proto is not None else None
        self._head = b'{"id":' + json.dumps(operation.id).encode()
        first = True
        while True:
            item = await self._next()
            if item is _END:
                return
            if first and isinstance(item, PreExecutionError):
                await handler._handle_pre_execution_error(operation, item)
                return
            if not isinstance(item, ExecutionResult):
                await handler._reject_incremental_delivery(operation)
                return
            first = False
            await operation.send_next(item)

    async def aclose(self) -> None:
        self._closed = True
        self.fast = False
        self._owner._leave(self._shared, self)


def text_frame(data: bytes) -> bytes:
    """An unmasked, unfragmented, uncompressed server text frame (RFC 6455 5.2) carrying `data`."""
    n = len(data)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65536:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + data


async def _snapshot(context: Any, start: StreamFactory) -> Any:
    snap_ctx = copy.copy(context)
    snap_ctx.snapshot_only = True
    source = await start(snap_ctx)
    try:
        async for result in source:
            return result
    finally:
        with contextlib.suppress(Exception):
            await source.aclose()
    return None


def next_payload_json(result: Any) -> str:
    """The `payload` of a graphql-transport-ws `next` message, as strawberry's Operation.send_next builds it."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [err.formatted for err in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return json.dumps(payload, separators=(",", ":"))


def _sequence(result: Any, fields: tuple[str, ...]) -> int | None:
    data = getattr(result, "data", None) or {}
    for f in fields:
        value = data.get(f)
        if isinstance(value, dict) and isinstance(value.get("sequence"), int):
            return value["sequence"]
    return None
