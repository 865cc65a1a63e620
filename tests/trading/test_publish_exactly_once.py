"""Every event of a committed trading transaction is published exactly once, in commit order per market, whether
or not the caller still waits (resolvers/trading/sequencer.py, market_data.queue): real Postgres and Redis.

A caller's task is cancelled (a client gone, uvicorn's shutdown) while its order waits in the market's sequencer
(the batch blocked on the market lock another transaction holds): its order is placed and committed by the batch,
and its events still arrive once, between the others' in book-sequence order. The same for a cancel run by
`sequencer.detached`. A normal placement, whose caller also publishes after its unit of work, sends each message
once. `sequencer.drain` on shutdown leaves nothing unsent before the Redis client closes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from models.trading import Market, Order, OrderStatus, OrderType, Side
from resolvers.trading import book, market_data, orders, sequencer
from resolvers.trading.orders import OrderRequest, place_order
from resolvers.unit_of_work import UnitOfWork
from tests.trading.factories import make_market, make_trader
from tests.trading.live import committed_sessions, listening


def _req(market_id: uuid.UUID, side: Side, qty: str, price: str, cid: str) -> OrderRequest:
    return OrderRequest(market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price), None, None, cid)


async def _as_mutation(sf: Any, hub: Any, work: Callable[[Any], Awaitable[Any]], events: Callable[[Any], Any]) -> Any:
    """As schema/trading.py runs a trading mutation: a unit of work on a session bound to an engine, the publish
    queued after its commit."""
    async with sf() as s:
        uow = UnitOfWork(s)

        async def body() -> Any:
            result = await work(s)
            uow.after_commit(lambda: market_data.publish(hub, events(result)))
            return result

        return await uow.run(body)


async def _place(sf: Any, hub: Any, user_id: uuid.UUID, req: OrderRequest) -> orders.Placed:
    placed: orders.Placed = await _as_mutation(
        sf,
        hub,
        lambda s: place_order(s, user_id, req, request_id=str(uuid.uuid4()), hub=hub),
        lambda placed: placed.events,
    )
    return placed


@contextlib.asynccontextmanager
async def _market_lock(sf: Any, market_id: uuid.UUID) -> AsyncIterator[None]:
    """Another transaction holds the market lock: the sequencer's batch (or a cancel) waits for it, its orders
    queued, until this commits."""
    async with sf() as s:
        await book.lock_market(s, market_id)
        yield
        await s.commit()


async def _received(listener: Any, n: int) -> list[tuple[str, dict[str, Any]]]:
    """The next n messages (channel without prefix, body), then nothing more."""
    out: list[tuple[str, dict[str, Any]]] = []
    while len(out) < n:
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None, f"only {len(out)} of {n} messages arrived: {out}"
        out.append((message["channel"].decode().split(":", 2)[-1], json.loads(message["data"])))
    extra = await listener.get_message(ignore_subscribe_messages=True, timeout=0.3)
    assert extra is None, f"a message more than expected: {extra}"
    return out


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def _queued(market_id: uuid.UUID) -> int:
    return sum(len(lane.pending) for lane in sequencer._lanes.values() if lane.market_id == market_id)


async def _book_sequence(sf: Any, market_id: uuid.UUID) -> int:
    async with sf() as s:
        return (await s.execute(select(Market.book_sequence).where(Market.id == market_id))).scalar_one()


async def _order(sf: Any, user_id: uuid.UUID, cid: str) -> Order:
    async with sf() as s:
        return (
            await s.execute(select(Order).where(Order.user_id == user_id, Order.client_order_id == cid))
        ).scalar_one()


async def test_an_order_whose_caller_is_cancelled_in_the_queue_is_published_once_in_order(
    module_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with committed_sessions(module_database_url) as sf, listening(redis_url, redis_prefix) as listener:
        m = await make_market(sf, tick="0.1", lot="1")
        seller = await make_trader(sf, m, tokens="100")
        buyer = await make_trader(sf, m, cash="10000")
        start = await _book_sequence(sf, m.market_id)
        publisher = Redis.from_url(redis_url)
        hub = SimpleNamespace(redis=publisher, prefix=redis_prefix)
        try:
            async with _market_lock(sf, m.market_id):
                first = asyncio.create_task(
                    _place(sf, hub, seller.user_id, _req(m.market_id, Side.SELL, "2", "10", "a"))
                )
                await _until(
                    lambda: any(lane.market_id == m.market_id and lane.task for lane in sequencer._lanes.values())
                )
                # the lane's first batch waits for the lock; these two wait in its queue
                gone = asyncio.create_task(_place(sf, hub, buyer.user_id, _req(m.market_id, Side.BUY, "1", "10", "b")))
                last = asyncio.create_task(
                    _place(sf, hub, seller.user_id, _req(m.market_id, Side.SELL, "1", "11", "c"))
                )
                await _until(lambda: _queued(m.market_id) == 2)
                gone.cancel()  # its caller goes away while its order is queued
                with pytest.raises(asyncio.CancelledError):
                    await gone
            # shutdown's order: the lanes and their publishes finish, then Redis closes
            assert await sequencer.drain(30)
            await publisher.aclose()
            placed_first, placed_last = await first, await last
        finally:
            await publisher.aclose()

        cancelled_order = await _order(sf, buyer.user_id, "b")
        assert cancelled_order.status is OrderStatus.FILLED  # placed and committed although its caller went away
        assert placed_first.order.status is OrderStatus.NEW and placed_last.order.status is OrderStatus.NEW
        end = await _book_sequence(sf, m.market_id)
        assert end == start + 3

        got = await _received(listener, 3 + 1 + 4)  # book x3, trade x1, order updates: a, b, a (filled by b), c
        book_seqs = [body["sequence"] for channel, body in got if channel.endswith(":book")]
        assert book_seqs == list(range(start + 1, end + 1))  # each book change once, in commit order: no gap
        trades = [body for channel, body in got if channel.endswith(":trades")]
        assert [t["sequence"] for t in trades] == [1]
        order_updates = [
            (body["client_order_id"], body["status"]) for channel, body in got if channel.startswith("user:")
        ]
        assert sorted(order_updates) == sorted([("a", "NEW"), ("b", "FILLED"), ("a", "PARTIALLY_FILLED"), ("c", "NEW")])
        assert order_updates.index(("b", "FILLED")) < order_updates.index(("c", "NEW"))


async def test_a_normal_placement_publishes_each_event_once(
    module_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The lane queues the events after its commit and the caller's publish after its unit of work only waits for
    them: one message each, and the caller is answered once they were sent."""
    async with committed_sessions(module_database_url) as sf, listening(redis_url, redis_prefix) as listener:
        m = await make_market(sf, tick="0.1", lot="1")
        seller = await make_trader(sf, m, tokens="100")
        buyer = await make_trader(sf, m, cash="10000")
        start = await _book_sequence(sf, m.market_id)
        publisher = Redis.from_url(redis_url)
        hub = SimpleNamespace(redis=publisher, prefix=redis_prefix)
        try:
            sold = await _place(sf, hub, seller.user_id, _req(m.market_id, Side.SELL, "1", "10", "s"))
            bought = await _place(sf, hub, buyer.user_id, _req(m.market_id, Side.BUY, "1", "10", "b"))
            for placed in (sold, bought):
                assert placed.events.sent is not None and placed.events.sent.done()  # sent before the answer
            await market_data.publish(hub, bought.events)  # publishing again sends nothing more
        finally:
            await publisher.aclose()
        got = await _received(listener, 1 + 1 + 1 + 1 + 2)  # book, order s; trade, book, orders b and s
        assert [body["sequence"] for channel, body in got if channel.endswith(":book")] == [start + 1, start + 2]
        assert [body["sequence"] for channel, body in got if channel.endswith(":trades")] == [1]


async def test_a_cancel_whose_caller_goes_away_is_published_once(
    module_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """cancelAllOrders as schema/trading.py runs it (sequencer.detached): its caller cancelled while the cancel
    waits for the market lock; the cancel commits and its events go out once."""
    async with committed_sessions(module_database_url) as sf, listening(redis_url, redis_prefix) as listener:
        m = await make_market(sf, tick="0.1", lot="1")
        seller = await make_trader(sf, m, tokens="100")
        publisher = Redis.from_url(redis_url)
        hub = SimpleNamespace(redis=publisher, prefix=redis_prefix)
        try:
            await _place(sf, hub, seller.user_id, _req(m.market_id, Side.SELL, "1", "10", "s1"))
            await _place(sf, hub, seller.user_id, _req(m.market_id, Side.SELL, "1", "11", "s2"))
            assert len(await _received(listener, 4)) == 4  # the placements' book and order events
            start = await _book_sequence(sf, m.market_id)

            def cancel_all(s: Any) -> Awaitable[Any]:
                return orders.cancel_orders(s, seller.user_id, m.market_id, None, reason="USER_CANCELED")

            async with _market_lock(sf, m.market_id):
                caller = asyncio.create_task(
                    _as_mutation(
                        sf, hub, lambda s: sequencer.detached(s, hub, cancel_all, lambda r: r[1]), lambda r: r[1]
                    )
                )
                await _until(lambda: len(sequencer._detached) == 1)
                await asyncio.sleep(0.05)  # let it reach the lock
                caller.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await caller
            assert await sequencer.drain(30)
        finally:
            await publisher.aclose()
        for cid in ("s1", "s2"):
            assert (await _order(sf, seller.user_id, cid)).status is OrderStatus.CANCELED
        got = await _received(listener, 3)
        assert [body["sequence"] for channel, body in got if channel.endswith(":book")] == [start + 1]
        assert sorted(body["client_order_id"] for channel, body in got if channel.startswith("user:")) == ["s1", "s2"]


async def test_drain_is_bounded_when_redis_does_not_answer(redis_prefix: str) -> None:
    """Shutdown does not hang on a Redis that never answers: `drain` gives up after its timeout and says so."""
    stuck = asyncio.Event()

    class Unanswered:
        async def evalsha(self, *args: Any) -> Any:
            await stuck.wait()  # never set

    hub = SimpleNamespace(redis=Unanswered(), prefix=redis_prefix)
    events = market_data.Events()
    events.add("market:m:book", {"sequence": 1})
    sent = market_data.queue(hub, events)
    assert sent is not None
    try:
        assert await sequencer.drain(0.2) is False
        assert not sent.done()
    finally:
        senders = [box.task for box in market_data._outboxes.values() if box.hub is hub and box.task is not None]
        for task in senders:
            task.cancel()  # as the loop's end would: the waiters are released
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert sent.done()
