"""One execution per distinct subscription per process for fields declared shared (every other subscription is
private: one execution per subscriber), bounded per-subscriber queues, snapshots for late joiners and slow
consumers; every subscription root field of the real schema is classified."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import timedelta

import strawberry
from starlette.websockets import WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode

from core.settings import Environment, Settings
from schema import RwaSchema, build_schema, sharing
from schema.shared_subscriptions import SharedSubscriptions, text_frame
from schema.sharing import SHARED, SHARED_WITH_SNAPSHOT
from server.middleware import RAW_SEND_SCOPE_KEY
from server.shared_subscriptions import SharedBytesWebSocketAdapter, SharedDeliveryHandler


@dataclass
class FakeViewer:
    user_id: str | None = None
    roles: frozenset[str] = frozenset()


@dataclass
class FakeContext:
    viewer: FakeViewer = field(default_factory=FakeViewer)
    snapshot_only: bool = False


class Feed:
    def __init__(self) -> None:
        self.queues: list[asyncio.Queue[int]] = []
        self.resolver_runs = 0
        self.items_resolved = 0

    async def publish(self, value: int) -> None:
        for q in self.queues:
            q.put_nowait(value)


FEED = Feed()


@strawberry.type
class Book:
    sequence: int
    snapshot: bool


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription(metadata=SHARED)
    async def ticks(self, market: int) -> AsyncGenerator[int, None]:
        FEED.resolver_runs += 1
        q: asyncio.Queue[int] = asyncio.Queue()
        FEED.queues.append(q)
        try:
            while True:
                value = await q.get()
                FEED.items_resolved += 1
                yield value * 10 + market
        finally:
            FEED.queues.remove(q)

    @strawberry.subscription(metadata=SHARED_WITH_SNAPSHOT)
    async def book(self, info: strawberry.Info) -> AsyncGenerator[Book, None]:
        yield Book(sequence=FEED.items_resolved, snapshot=True)
        if info.context.snapshot_only:
            return
        q: asyncio.Queue[int] = asyncio.Queue()
        FEED.queues.append(q)
        try:
            while True:
                value = await q.get()
                FEED.items_resolved += 1
                yield Book(sequence=value, snapshot=False)
        finally:
            FEED.queues.remove(q)

    @strawberry.subscription  # declares nothing: private
    async def mine(self, info: strawberry.Info) -> AsyncGenerator[str, None]:
        FEED.resolver_runs += 1
        q: asyncio.Queue[int] = asyncio.Queue()
        FEED.queues.append(q)
        try:
            while True:
                value = await q.get()
                yield f"{info.context.viewer.user_id}:{value}"
        finally:
            FEED.queues.remove(q)


def make_schema(queue_size: int = 16) -> RwaSchema:
    schema = RwaSchema(query=Query, subscription=Subscription)
    schema.shared = SharedSubscriptions(
        shared_fields=sharing.shared_fields(schema._schema),
        snapshot_fields=sharing.snapshot_fields(schema._schema),
        queue_size=queue_size,
    )
    return schema


async def collect(stream, n: int) -> list:  # type: ignore[no-untyped-def]
    out = []
    async for result in stream:
        out.append(result.data)
        if len(out) == n:
            break
    await stream.aclose()
    return out


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_identical_subscriptions_execute_once():
    global FEED
    FEED = Feed()
    schema = make_schema()
    streams = [await schema.stream("subscription { ticks(market: 1) }", context_value=FakeContext()) for _ in range(50)]
    other = await schema.stream("subscription { ticks(market: 2) }", context_value=FakeContext())
    tasks = [asyncio.create_task(collect(s, 3)) for s in [*streams, other]]
    await _settle()
    for v in (1, 2, 3):
        await FEED.publish(v)
        await _settle()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert FEED.resolver_runs == 2  # one per distinct document/variables, not one per subscriber
    assert FEED.items_resolved == 6
    assert all(r == [{"ticks": 11}, {"ticks": 21}, {"ticks": 31}] for r in results[:-1])
    assert results[-1] == [{"ticks": 12}, {"ticks": 22}, {"ticks": 32}]
    await _settle()
    assert schema.shared.active() == 0  # last subscriber gone: the source stopped


async def test_different_roles_do_not_share():
    global FEED
    FEED = Feed()
    schema = make_schema()
    a = await schema.stream(
        "subscription { ticks(market: 1) }", context_value=FakeContext(FakeViewer("u1", frozenset({"ADMIN"})))
    )
    b = await schema.stream(
        "subscription { ticks(market: 1) }", context_value=FakeContext(FakeViewer("u2", frozenset({"INVESTOR"})))
    )
    tasks = [asyncio.create_task(collect(s, 1)) for s in (a, b)]
    await _settle()
    await FEED.publish(1)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert FEED.resolver_runs == 2


async def test_slow_consumer_is_bounded_and_does_not_block_others():
    global FEED
    FEED = Feed()
    schema = make_schema(queue_size=4)
    fast = await schema.stream("subscription { ticks(market: 0) }", context_value=FakeContext())
    slow = await schema.stream("subscription { ticks(market: 0) }", context_value=FakeContext())
    fast_task = asyncio.create_task(collect(fast, 20))
    await _settle()
    for v in range(20):
        await FEED.publish(v)
        await _settle()
    assert len(await asyncio.wait_for(fast_task, 5)) == 20
    # the slow one never read: it kept only the newest 4
    got = await asyncio.wait_for(collect(slow, 4), 5)
    assert got == [{"ticks": v * 10} for v in (16, 17, 18, 19)]


async def test_late_joiner_of_snapshot_field_gets_a_fresh_snapshot_then_newer_deltas():
    global FEED
    FEED = Feed()
    schema = make_schema()
    first = await schema.stream("subscription { book { sequence snapshot } }", context_value=FakeContext())
    first_task = asyncio.create_task(collect(first, 4))
    await _settle()
    for v in (1, 2):
        await FEED.publish(v)
        await _settle()
    late = await schema.stream("subscription { book { sequence snapshot } }", context_value=FakeContext())
    late_task = asyncio.create_task(collect(late, 2))
    await _settle()
    await FEED.publish(3)
    await _settle()
    assert await asyncio.wait_for(first_task, 5) == [
        {"book": {"sequence": 0, "snapshot": True}},
        {"book": {"sequence": 1, "snapshot": False}},
        {"book": {"sequence": 2, "snapshot": False}},
        {"book": {"sequence": 3, "snapshot": False}},
    ]
    assert await asyncio.wait_for(late_task, 5) == [
        {"book": {"sequence": 2, "snapshot": True}},
        {"book": {"sequence": 3, "snapshot": False}},
    ]


# --- direct delivery through strawberry's graphql-transport-ws handler (SharedDeliveryHandler)


class FakeTransport:
    def __init__(self, frames: list[dict], closing: bool) -> None:
        self.frames, self.closing = frames, closing

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        assert data[0] == 0x81  # one complete, unfragmented, unmasked text frame
        n, head = data[1], 2
        if n == 126:
            n, head = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(data[2:10], "big"), 10
        assert len(data) == head + n
        self.frames.append(json.loads(data[head:]))


class FakeProtocol(WebSocketsSansIOProtocol):
    """The parts of uvicorn's websockets-sansio protocol the pump writes through."""

    def __init__(self, frames: list[dict], writable: bool, broken: bool) -> None:  # no super(): no server
        self.transport = FakeTransport(frames, closing=broken)  # type: ignore[assignment]
        self.writable = asyncio.Event()
        if writable:
            self.writable.set()
        self.close_sent, self.disconnected = False, broken


class FakeSocket:
    """The starlette WebSocket surface the handler uses, over a FakeProtocol (its ASGI send in the scope as the
    middleware puts it); `paused` starts with the transport above its high-water mark (a slow reader)."""

    def __init__(self, paused: bool = False, broken: bool = False) -> None:
        self.frames: list[dict] = []
        self.broken = broken
        self.proto = FakeProtocol(self.frames, not paused, broken)
        self.scope = {RAW_SEND_SCOPE_KEY: self.proto.send}

    async def send(self, message: dict) -> None:  # the ordinary path: waits until the transport drains
        if self.broken:
            raise WebSocketDisconnect(1006)
        await self.proto.writable.wait()
        self.frames.append(json.loads(message["text"]))

    async def send_text(self, text: str) -> None:
        await self.send({"type": "websocket.send", "text": text})


class FakeView:
    def encode_json(self, data: object) -> str:
        return json.dumps(data)


async def open_handler(schema: RwaSchema, socket: FakeSocket, op_id: str, query: str) -> SharedDeliveryHandler:
    adapter = SharedBytesWebSocketAdapter(FakeView(), socket, socket)  # type: ignore[arg-type]
    handler = SharedDeliveryHandler(
        view=FakeView(),
        websocket=adapter,
        context=FakeContext(),
        root_value=None,  # type: ignore[arg-type]
        schema=schema,
        connection_init_wait_timeout=timedelta(seconds=5),
        max_subscriptions_per_connection=None,
    )
    handler.connection_acknowledged = True
    await handler.handle_subscribe({"id": op_id, "type": "subscribe", "payload": {"query": query}})
    return handler


def nexts(socket: FakeSocket, op_id: str) -> list:
    assert all(f["id"] == op_id and f["type"] == "next" and set(f["payload"]) == {"data"} for f in socket.frames)
    return [f["payload"]["data"] for f in socket.frames]


async def test_pump_writes_to_idle_subscribers_without_waking_their_tasks():
    global FEED
    FEED = Feed()
    schema = make_schema()
    sockets = [FakeSocket() for _ in range(20)]
    handlers = [
        await open_handler(schema, s, f"op-{i}", "subscription { ticks(market: 1) }") for i, s in enumerate(sockets)
    ]
    await _settle()
    for v in (1, 2, 3):
        await FEED.publish(v)
        await _settle()
    assert FEED.resolver_runs == 1
    for i, s in enumerate(sockets):
        assert nexts(s, f"op-{i}") == [{"ticks": 11}, {"ticks": 21}, {"ticks": 31}]
    assert schema.shared.direct_sends == 20 * 3  # every frame written to the transport by the pump itself
    await FEED.publish(4)  # the pump runs next, before the tasks canceled below
    for h in handlers:
        await h.handle_complete({"id": next(iter(h.operations)), "type": "complete"})
    await _settle()  # completed: nothing more is written to them
    assert all(len(s.frames) == 3 for s in sockets)
    for h in handlers:
        await h.shutdown()
    assert schema.shared.active() == 0


async def test_blocked_socket_queues_boundedly_in_order_and_does_not_block_others():
    global FEED
    FEED = Feed()
    schema = make_schema(queue_size=4)
    slow, fast = FakeSocket(paused=True), FakeSocket()
    handlers = [
        await open_handler(schema, slow, "slow", "subscription { ticks(market: 0) }"),
        await open_handler(schema, fast, "fast", "subscription { ticks(market: 0) }"),
    ]
    await _settle()
    for v in range(20):
        await FEED.publish(v)
        await _settle()
    assert nexts(fast, "fast") == [{"ticks": v * 10} for v in range(20)]
    assert slow.frames == []
    slow.proto.writable.set()  # the transport drained
    await _settle()
    # the send in progress when the socket blocked, then the newest 4
    assert nexts(slow, "slow") == [{"ticks": v * 10} for v in (0, 16, 17, 18, 19)]
    await FEED.publish(20)  # drained: back to direct writes
    await _settle()
    assert nexts(slow, "slow")[-1] == {"ticks": 200} and nexts(fast, "fast")[-1] == {"ticks": 200}
    for h in handlers:
        await h.shutdown()
    assert schema.shared.active() == 0


async def test_broken_socket_leaves_without_disturbing_the_others():
    global FEED
    FEED = Feed()
    schema = make_schema()
    broken, ok = FakeSocket(broken=True), FakeSocket()
    handlers = [
        await open_handler(schema, broken, "b", "subscription { ticks(market: 3) }"),
        await open_handler(schema, ok, "ok", "subscription { ticks(market: 3) }"),
    ]
    await _settle()
    for v in (1, 2):
        await FEED.publish(v)
        await _settle()
    assert nexts(ok, "ok") == [{"ticks": 13}, {"ticks": 23}]
    assert "b" not in handlers[0].operations  # its operation ended with the socket
    for h in handlers:
        await h.shutdown()
    assert schema.shared.active() == 0


async def test_direct_late_joiner_of_snapshot_field_gets_snapshot_then_newer_deltas():
    global FEED
    FEED = Feed()
    schema = make_schema()
    first, late = FakeSocket(), FakeSocket()
    handlers = [await open_handler(schema, first, "1", "subscription { book { sequence snapshot } }")]
    await _settle()
    for v in (1, 2):
        await FEED.publish(v)
        await _settle()
    handlers.append(await open_handler(schema, late, "2", "subscription { book { sequence snapshot } }"))
    await _settle()
    await FEED.publish(3)
    await _settle()
    assert nexts(first, "1") == [{"book": {"sequence": s, "snapshot": s == 0}} for s in (0, 1, 2, 3)]
    assert nexts(late, "2") == [
        {"book": {"sequence": 2, "snapshot": True}},
        {"book": {"sequence": 3, "snapshot": False}},
    ]
    for h in handlers:
        await h.shutdown()


def test_text_frame_is_what_websockets_serializes_for_every_length_encoding():
    for n in (0, 125, 126, 65535, 65536):
        data = b"x" * n
        assert text_frame(data) == Frame(Opcode.TEXT, data).serialize(mask=False)


def test_every_subscription_root_field_declares_whether_it_is_shared() -> None:
    """A new subscription must say on its field whether its results may go to other sockets (schema/sharing.py)."""
    for env in (Environment.DEVELOPMENT, Environment.PRODUCTION):
        declared = sharing.declared_sharing(build_schema(Settings(RWA_ENV=env))._schema)  # type: ignore[call-arg]
        assert declared, "the schema has subscriptions"
        unclassified = sorted(name for name, kind in declared.items() if kind not in ("shared", "private"))
        assert not unclassified, (
            f"subscription fields {unclassified} declare neither metadata=SHARED nor "
            "metadata=PRIVATE (schema/sharing.py)"
        )
    assert {n for n, kind in declared.items() if kind == "private"} >= {"myOrders", "paymentUpdates"}
    assert {n for n, kind in declared.items() if kind == "shared"} >= {"trades", "orderBook", "ticker", "candles"}


def test_an_undeclared_subscription_field_is_private() -> None:
    schema = make_schema()
    assert schema.shared is not None
    assert "mine" not in schema.shared.shared_fields and sharing.declared_sharing(schema._schema)["mine"] is None


async def test_private_fields_run_per_subscriber_with_their_own_caller():
    """Two users (and one user on two sockets) with the same document never get one another's results."""
    global FEED
    FEED = Feed()
    schema = make_schema()
    contexts = [
        FakeContext(FakeViewer("alice", frozenset({"INVESTOR"}))),
        FakeContext(FakeViewer("bob", frozenset({"INVESTOR"}))),
        FakeContext(FakeViewer("alice", frozenset({"INVESTOR"}))),
    ]
    documents = [
        "subscription { mine }",
        "subscription { ...F } fragment F on Subscription { mine }",
        "subscription { ... on Subscription { mine } }",
        "subscription { x: mine }",
    ]
    streams = [await schema.stream(doc, context_value=ctx) for doc in documents for ctx in contexts]
    tasks = [asyncio.create_task(collect(s, 2)) for s in streams]
    await _settle()
    for v in (1, 2):
        await FEED.publish(v)
        await _settle()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert schema.shared.executions_started == 0 and FEED.resolver_runs == len(streams)
    for (doc, ctx), result in zip([(d, c) for d in documents for c in contexts], results):
        user = ctx.viewer.user_id
        assert [list(r.values())[0] for r in result] == [f"{user}:1", f"{user}:2"], (doc, user, result)


async def test_a_shared_field_reached_through_a_fragment_is_not_shared():
    """The sharing decision reads root field names; a fragment spread's name is not one, so such a document runs on
    its own (before, `...F` was taken for a field called F, which no declaration made personal)."""
    global FEED
    FEED = Feed()
    schema = make_schema()
    doc = "subscription { ...F } fragment F on Subscription { ticks(market: 1) }"
    streams = [await schema.stream(doc, context_value=FakeContext()) for _ in range(2)]
    tasks = [asyncio.create_task(collect(s, 1)) for s in streams]
    await _settle()
    await FEED.publish(1)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert results == [[{"ticks": 11}], [{"ticks": 11}]]
    assert schema.shared.executions_started == 0 and FEED.resolver_runs == 2
