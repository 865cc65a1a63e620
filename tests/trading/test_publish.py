"""Market data publishing (resolvers/trading/market_data.publish) on a real Redis: calls that arrive together share
round trips (one script runs every PUBLISH of one), and every message still arrives exactly once, in the order of
the calls; events are encoded as the standard library's JSON encoder did."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from asyncpg.pgproto.pgproto import UUID as PgUUID
from redis.asyncio import Redis

from models.trading import OrderStatus, OrderType, Side, TimeInForce
from resolvers.trading import market_data
from resolvers.trading.market_data import Events
from resolvers.trading.order_view import OrderView


async def test_concurrent_publishes_share_pipelines_and_keep_call_order(redis_url, redis_prefix):  # type: ignore[no-untyped-def]
    redis = Redis.from_url(redis_url)
    listener = redis.pubsub()
    await listener.psubscribe(redis_prefix + "*")
    await listener.get_message(timeout=1)  # the subscription's confirmation
    round_trips = 0
    real_evalsha, real_eval = redis.evalsha, redis.eval

    async def counting_evalsha(*args: Any) -> Any:
        nonlocal round_trips
        round_trips += 1
        return await real_evalsha(*args)

    async def counting_eval(*args: Any) -> Any:
        nonlocal round_trips
        round_trips += 1
        return await real_eval(*args)

    # spies: the real commands run
    redis.evalsha, redis.eval = counting_evalsha, counting_eval  # type: ignore[method-assign]
    await redis.script_flush()  # the first round trip finds no script: EVALSHA is refused, EVAL publishes once
    hub = SimpleNamespace(redis=redis, prefix=redis_prefix)
    calls = 40
    try:
        batches = []
        for i in range(calls):
            events = Events()
            events.add("market:m:trades", {"call": i, "part": 0})
            events.add(f"user:u{i % 3}:orders", {"call": i, "part": 1})
            batches.append(events)
        await asyncio.gather(*[market_data.publish(hub, e) for e in batches])
        received: list[tuple[int, int]] = []
        while len(received) < 2 * calls:
            message = await listener.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message is not None, f"only {len(received)} of {2 * calls} messages arrived"
            body = json.loads(message["data"])
            received.append((body["call"], body["part"]))
        assert received == [(i, part) for i in range(calls) for part in (0, 1)]  # once each, in call order
        assert await listener.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
        assert 1 <= round_trips < calls / 4, round_trips
        # publishing the same events again sends nothing (exactly once per Events); later calls, one at a time,
        # still go out (a new sender task after the previous one ended)
        await market_data.publish(hub, batches[0])
        later = Events()
        later.add("market:m:trades", {"call": calls})
        await market_data.publish(hub, later)
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None and json.loads(message["data"]) == {"call": calls}
    finally:
        await listener.aclose()
        await redis.aclose()


async def _collect(listener: Any, n: int) -> list[Any]:
    out = []
    while len(out) < n:
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None, f"only {len(out)} of {n} messages arrived"
        out.append(json.loads(message["data"]))
    assert await listener.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
    return out


async def test_without_scripts_a_pipeline_publishes_each_message_once(redis_url, redis_prefix):  # type: ignore[no-untyped-def]
    """A Redis user whose ACL refuses EVAL/EVALSHA (NOPERM) still gets every message, once, in order."""
    admin = Redis.from_url(redis_url)
    user, password = f"rwa-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await admin.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-eval", "-evalsha"],
    )
    limited = Redis.from_url(redis_url, username=user, password=password)
    listener = admin.pubsub()
    await listener.psubscribe(redis_prefix + "*")
    await listener.get_message(timeout=1)
    try:
        hub = SimpleNamespace(redis=limited, prefix=redis_prefix)
        batches = []
        for i in range(5):
            events = Events()
            events.add("market:m:trades", {"call": i})
            batches.append(events)
        await asyncio.gather(*[market_data.publish(hub, e) for e in batches])
        assert await _collect(listener, 5) == [{"call": i} for i in range(5)]
    finally:
        await listener.aclose()
        await limited.aclose()
        await admin.acl_deluser(user)
        await admin.aclose()


def _stdlib_encode(event: dict[str, Any]) -> bytes:
    """The encoder publishing used before orjson (json.dumps with the same hook): what subscribers were written
    against."""
    return json.dumps(event, default=market_data._default, separators=(",", ":")).encode()


def test_events_encode_as_the_standard_library_did() -> None:
    """Order, trade and book events (UUIDs, Decimals of every scale, aware and whole-second datetimes, enums,
    None, non-ASCII clientOrderIds) decode to the same JSON; ASCII-only ones are the same bytes."""
    at = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
    order = OrderView(
        uuid.uuid4(),
        42,
        uuid.uuid4(),
        uuid.uuid4(),
        "cid-1",
        Side.SELL,
        OrderType.LIMIT,
        TimeInForce.GTC,
        Decimal("10.00"),
        Decimal("1.000000000000000001"),
        Decimal("0E-18"),
        OrderStatus.PARTIALLY_FILLED,
        None,
        at.replace(microsecond=0),
        "0x" + "ab" * 20,
        Decimal("12345678901234567890.123456789012345678"),
        at,
        at + timedelta(microseconds=1),
    )
    events = [
        order.event(),
        {
            **order.event(),
            "clientOrderId": "ордер-ü",
            "reason": "GTD_EXPIRED",
            "createdAt": at.astimezone(timezone(timedelta(hours=2))),
        },
        market_data.book_event(
            uuid.uuid4(), 7, [(Side.BUY, Decimal("9.99"), Decimal(0)), (Side.SELL, Decimal("1E+2"), Decimal("3"))]
        ),
        {"id": uuid.uuid4(), "sequence": 2**62, "takerSide": Side.BUY, "price": Decimal("-0.5"), "createdAt": at},
        # the UUID type asyncpg returns for uuid columns (a subclass of uuid.UUID)
        {"id": PgUUID(str(uuid.uuid4())), "userId": [PgUUID(str(uuid.uuid4()))], "at": at},
    ]
    for event in events:
        new, old = market_data.encode(event), _stdlib_encode(event)
        assert json.loads(new) == json.loads(old)
        if old.isascii() and b"\\u" not in old:
            assert new == old


def test_order_view_event_and_copy_carry_every_field() -> None:
    """OrderView.event() publishes every field by its name, and copy() is an independent snapshot equal to
    `dataclasses.replace` (the batch keeps one per order as it stood after it: later orders change the original)."""
    at = datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC)
    view = OrderView(
        *(uuid.uuid4(), 3, uuid.uuid4(), uuid.uuid4(), "c", Side.BUY, OrderType.LIMIT, TimeInForce.GTD),
        *(Decimal("2.50"), Decimal(4), Decimal(1), OrderStatus.PARTIALLY_FILLED, None, at, "0xab", Decimal("7.5")),
        *(at, at + timedelta(seconds=1)),
    )
    assert view.event() == {f.name: getattr(view, f.name) for f in fields(view)}
    snapshot = view.copy()
    assert snapshot == replace(view) and snapshot is not view
    view.filled_quantity, view.status = Decimal(4), OrderStatus.FILLED
    assert (snapshot.filled_quantity, snapshot.status) == (Decimal(1), OrderStatus.PARTIALLY_FILLED)
