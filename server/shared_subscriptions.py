"""Execute each subscription once per process per distinct operation, whatever the number of subscribers.

Subscribers whose operations are identical — same document, variables and operation name, the same roles
(so authorization decides the same) and, for viewer-specific fields (`personal_fields`), the same user —
share one execution: the resolver runs once per event, graphql-core completes the result once, and the
websocket layer (`SharedBytesWebSocketAdapter`) serializes it once and sends the same bytes to all of them.

Each subscriber reads from its own bounded queue: a slow one loses its oldest messages and never blocks the
others or the source. For fields that start with a snapshot (`snapshot_fields`, e.g. an order book), a
subscriber that joins late or lost messages first gets a fresh snapshot (the same document executed with
`context.snapshot_only = True`), and deltas older than that snapshot's `sequence` are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import OperationDefinitionNode, OperationType, parse
from graphql.error import GraphQLSyntaxError
from strawberry.asgi import ASGIWebSocketAdapter
from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected

_END = object()
StreamFactory = Callable[[Any], Awaitable[AsyncIterator[Any]]]


def subscription_fields(query: str, operation_name: str | None) -> tuple[str, ...] | None:
    """Root field names of the selected operation if it is a subscription, else None."""
    try:
        document = parse(query)
    except GraphQLSyntaxError:
        return None
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None or (definition.name and definition.name.value == operation_name)
        ):
            if definition.operation is not OperationType.SUBSCRIPTION:
                return None
            return tuple(sel.name.value for sel in definition.selection_set.selections if hasattr(sel, "name"))
    return None


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[Any]
    dropped: int = 0

    def offer(self, item: Any) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)


@dataclass
class _Shared:
    key: Hashable
    subscribers: set[_Subscriber] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    first: Any = None  # a pre-execution error, replayed to late joiners


class SharedSubscriptions:
    def __init__(self, *, personal_fields: frozenset[str] = frozenset(),
                 snapshot_fields: frozenset[str] = frozenset(), queue_size: int = 128) -> None:
        self.personal_fields = personal_fields
        self.snapshot_fields = snapshot_fields
        self.queue_size = queue_size
        self._streams: dict[Hashable, _Shared] = {}
        self.executions_started = 0  # observable in tests and benchmarks

    def key(self, query: str, variables: Mapping[str, Any] | None, operation_name: str | None,
            fields: tuple[str, ...], viewer: Any) -> Hashable:
        personal = any(f in self.personal_fields for f in fields)
        return (query, json.dumps(variables or {}, sort_keys=True, default=str), operation_name,
                tuple(sorted(getattr(viewer, "roles", ()))), bool(getattr(viewer, "user_id", None)),
                # a read-only API key is refused what its owner's token may do: never share across the two
                bool(getattr(viewer, "read_only", False)),
                getattr(viewer, "user_id", None) if personal else None)

    def active(self) -> int:
        return len(self._streams)

    async def join(self, key: Hashable, fields: tuple[str, ...], context: Any,
                   start: StreamFactory) -> AsyncGenerator[Any, None]:
        shared = self._streams.get(key)
        late = shared is not None
        if shared is None:
            shared = self._streams[key] = _Shared(key)
        me = _Subscriber(asyncio.Queue(self.queue_size))
        shared.subscribers.add(me)
        if shared.task is None:
            self.executions_started += 1
            shared.task = asyncio.create_task(self._pump(shared, start, context))
        return self._consume(shared, me, fields, context, start, late)

    async def _pump(self, shared: _Shared, start: StreamFactory, context: Any) -> None:
        source = await start(context)
        try:
            async for result in source:
                if getattr(result, "data", None) is None and shared.first is None:
                    shared.first = result
                for sub in tuple(shared.subscribers):
                    sub.offer(result)
        finally:
            with contextlib.suppress(Exception):
                await source.aclose()  # type: ignore[attr-defined]
            for sub in tuple(shared.subscribers):
                sub.offer(_END)
            if self._streams.get(shared.key) is shared:
                del self._streams[shared.key]

    async def _snapshot(self, context: Any, start: StreamFactory) -> Any:
        snap_ctx = copy.copy(context)
        snap_ctx.snapshot_only = True
        source = await start(snap_ctx)
        try:
            async for result in source:
                return result
        finally:
            with contextlib.suppress(Exception):
                await source.aclose()  # type: ignore[attr-defined]
        return None

    async def _consume(self, shared: _Shared, me: _Subscriber, fields: tuple[str, ...], context: Any,
                       start: StreamFactory, late: bool) -> AsyncGenerator[Any, None]:
        snapshotting = any(f in self.snapshot_fields for f in fields)
        floor: int | None = None
        try:
            if late and shared.first is not None:
                yield shared.first
                return
            if late and snapshotting:
                snap = await self._snapshot(context, start)
                if snap is not None:
                    floor = _sequence(snap, fields)
                    yield snap
            while True:
                item = await me.queue.get()
                if item is _END:
                    return
                if me.dropped and snapshotting:
                    me.dropped = 0
                    while not me.queue.empty():  # what is queued is older than the snapshot
                        if me.queue.get_nowait() is _END:
                            return
                    snap = await self._snapshot(context, start)
                    if snap is not None:
                        floor = _sequence(snap, fields)
                        yield snap
                    continue
                if floor is not None:
                    seq = _sequence(item, fields)
                    if seq is not None and seq <= floor:
                        continue
                yield item
        finally:
            shared.subscribers.discard(me)
            if not shared.subscribers and shared.task is not None and not shared.task.done():
                shared.task.cancel()
                if self._streams.get(shared.key) is shared:
                    del self._streams[shared.key]


def _sequence(result: Any, fields: tuple[str, ...]) -> int | None:
    data = getattr(result, "data", None) or {}
    for f in fields:
        value = data.get(f)
        if isinstance(value, dict) and isinstance(value.get("sequence"), int):
            return value["sequence"]
    return None


class SharedBytesWebSocketAdapter(ASGIWebSocketAdapter):
    """Serialize a shared `next` payload once; each subscriber's frame only differs by its operation id."""

    _cache: "OrderedDict[int, tuple[Any, str]]" = OrderedDict()

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
