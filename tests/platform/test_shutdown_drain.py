"""The API's shutdown waits for the trading writes in flight (server/app.py lifespan, resolvers/trading/sequencer.py
drain): an order whose batch is still committing when shutdown starts is committed and its events are published
before Redis and the engine close, and the wait is bounded by SHUTDOWN_DRAIN_TIMEOUT_S. Real Postgres and Redis.

The batch is held in flight by another transaction holding the market's lock (as a slow commit or a busy market
would); the request that placed the order is cancelled first, as uvicorn cuts a request at its graceful timeout,
so only the lane (not the caller) can commit and publish it."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from starlette.applications import Starlette

from core.services import Services, build_services
from core.settings import Settings
from models.trading import Order, OrderStatus, OrderType, Side
from resolvers.trading import book, market_data, sequencer
from resolvers.trading.orders import OrderRequest, place_order
from resolvers.unit_of_work import UnitOfWork
from server.app import create_app
from tests.fixtures.app import make_settings
from tests.trading.factories import make_market, make_trader
from tests.trading.live import committed_sessions, listening

RELEASE_AFTER_S = 0.5  # how long the market lock is held after shutdown starts


def _settings(database_url: str, redis_url: str, prefix: str, data_dir: Path, **extra: Any) -> Settings:
    return make_settings(database_url, redis_url, prefix, data_dir, RWA_DB_POOL_SIZE=3, **extra)


async def _place(services: Services, user_id: uuid.UUID, market_id: uuid.UUID, cid: str) -> Any:
    """placeOrder as schema/trading.py runs it on the app's services: a unit of work on an engine-bound session (so
    the market's sequencer lane places it), the caller's publish after its commit."""
    req = OrderRequest(market_id, Side.SELL, OrderType.LIMIT, Decimal("1"), Decimal("10"), None, None, cid)
    hub = services.pubsub
    async with services.session_factory() as s:
        uow = UnitOfWork(s)

        async def body() -> Any:
            placed = await place_order(s, user_id, req, request_id=str(uuid.uuid4()), hub=hub)
            uow.after_commit(lambda: market_data.publish(hub, placed.events))
            return placed

        return await uow.run(body)


def _lane_busy(market_id: uuid.UUID) -> bool:
    return any(lane.market_id == market_id and lane.task is not None for lane in sequencer._lanes.values())


def _unsent(hub: Any) -> bool:
    return any(box.hub is hub and (box.task is not None or box.pending) for box in market_data._outboxes.values())


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def _received(listener: Any, prefix: str, about: tuple[str, ...], n: int) -> list[tuple[str, dict[str, Any]]]:
    """The next n messages on channels naming one of `about` (channel without prefix, body), then no more of them
    (others, e.g. the revocation mirror's, are skipped)."""
    out: list[tuple[str, dict[str, Any]]] = []

    async def next_one(timeout: float) -> tuple[str, dict[str, Any]] | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            message = await listener.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is None:
                return None
            channel = message["channel"].decode().removeprefix(prefix)
            if any(name in channel for name in about):
                return channel, json.loads(message["data"])
        return None

    while len(out) < n:
        got = await next_one(5)
        assert got is not None, f"only {len(out)} of {n} messages arrived: {out}"
        out.append(got)
    extra = await next_one(0.3)
    assert extra is None, f"a message more than expected: {extra}"
    return out


async def _status(sf: Any, user_id: uuid.UUID, cid: str) -> OrderStatus | None:
    """The order's committed status (None: not committed)."""
    async with sf() as s:
        return (
            await s.execute(select(Order.status).where(Order.user_id == user_id, Order.client_order_id == cid))
        ).scalar_one_or_none()


async def _in_flight_at_shutdown(
    app: Starlette, sf: Any, user_id: uuid.UUID, market_id: uuid.UUID, cid: str, release_after: float
) -> tuple[float, bool]:
    """Start the app, place an order whose batch waits for the market lock this holds, cut its request, start the
    lifespan's shutdown and release the lock `release_after` seconds later. (How long the shutdown took, whether
    the batch was still in flight when it ended.)"""
    services: Services = app.state.services
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    shutdown: asyncio.Task[Any] | None = None
    loop = asyncio.get_running_loop()
    ended: list[tuple[float, bool]] = []
    try:
        async with sf() as holder:
            await book.lock_market(holder, market_id)
            caller = asyncio.create_task(_place(services, user_id, market_id, cid))
            await _until(lambda: _lane_busy(market_id))
            await asyncio.sleep(0.1)  # the lane's batch reaches the lock and waits
            caller.cancel()  # the request is gone; its order is the lane's now
            with pytest.raises(asyncio.CancelledError):
                await caller
            assert _lane_busy(market_id)
            started = loop.time()
            shutdown = asyncio.create_task(lifespan.__aexit__(None, None, None))
            shutdown.add_done_callback(lambda _: ended.append((loop.time() - started, _lane_busy(market_id))))
            await asyncio.sleep(release_after)
            await holder.commit()  # the batch goes on
        await asyncio.wait_for(shutdown, 30)
        await asyncio.sleep(0)  # the done callback has run
        return ended[0]
    finally:
        if shutdown is None:
            await lifespan.__aexit__(None, None, None)


async def test_shutdown_waits_for_a_batch_in_flight_to_commit_and_publish(
    module_database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    app = create_app(_settings(module_database_url, redis_url, redis_prefix, tmp_path / "data"))
    services: Services = app.state.services
    hub = services.pubsub
    at_close: list[tuple[bool, bool, bool]] = []
    close = services.aclose

    async with committed_sessions(module_database_url) as sf, listening(redis_url, redis_prefix) as listener:
        m = await make_market(sf, tick="0.1", lot="1")
        seller = await make_trader(sf, m, tokens="100")

        async def aclose() -> None:  # what was still in flight when the lifespan closed the services
            placed = await _status(sf, seller.user_id, "x") is OrderStatus.NEW
            at_close.append((_lane_busy(m.market_id), _unsent(hub), placed))
            await close()

        services.aclose = aclose  # type: ignore[method-assign]  # observe the lifespan's own call
        try:
            took, busy_at_end = await _in_flight_at_shutdown(
                app, sf, seller.user_id, m.market_id, "x", release_after=RELEASE_AFTER_S
            )
        finally:
            await sequencer.drain(30)  # nothing left running into the next test, whatever failed

        assert took >= RELEASE_AFTER_S and not busy_at_end  # the shutdown waited for the batch held by the lock
        assert took < RELEASE_AFTER_S + 4  # and no longer than it took
        # when the services closed, the order was committed and nothing was left running or unsent
        assert at_close == [(False, False, True)]
        got = dict(await _received(listener, redis_prefix, (str(m.market_id), str(seller.user_id)), 2))
        assert set(got) == {f"market:{m.market_id}:book", f"user:{seller.user_id}:orders"}
        update = got[f"user:{seller.user_id}:orders"]
        assert (update["client_order_id"], update["status"]) == ("x", "NEW")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_shutdown_gives_up_after_the_drain_timeout(
    module_database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """A batch that cannot commit in time (its market lock held past SHUTDOWN_DRAIN_TIMEOUT_S) does not hold up the
    shutdown longer, and the shutdown says so. The services are injected: the lifespan drains them all the same,
    before their owner closes them."""
    timeout = 0.3
    settings = _settings(
        module_database_url, redis_url, redis_prefix, tmp_path / "data", SHUTDOWN_DRAIN_TIMEOUT_S=str(timeout)
    )
    services = build_services(settings)
    app = create_app(settings, services)
    records = _Records()
    logger = logging.getLogger("rwa.server")
    logger.addHandler(records)
    try:
        async with committed_sessions(module_database_url) as sf:
            m = await make_market(sf, tick="0.1", lot="1")
            seller = await make_trader(sf, m, tokens="100")
            try:
                took, busy_at_end = await _in_flight_at_shutdown(
                    app, sf, seller.user_id, m.market_id, "y", release_after=timeout + 1.5
                )
            finally:
                assert await sequencer.drain(30)  # released: the lane commits on the services still open
                await services.aclose()
            assert await _status(sf, seller.user_id, "y") is OrderStatus.NEW
    finally:
        logger.removeHandler(records)

    assert busy_at_end  # the shutdown ended while the batch still waited for the lock
    assert timeout - 0.05 <= took < timeout + 1.0  # after waiting for it up to the timeout, not longer
    assert any("SHUTDOWN_DRAIN_TIMEOUT_S" in message for message in records.messages), records.messages


def test_the_drain_timeout_setting() -> None:
    assert Settings().shutdown_drain_timeout_s == 5.0
    assert Settings(SHUTDOWN_DRAIN_TIMEOUT_S="0").shutdown_drain_timeout_s == 0.0
    with pytest.raises(ValidationError, match="SHUTDOWN_DRAIN_TIMEOUT_S"):
        Settings(SHUTDOWN_DRAIN_TIMEOUT_S="-1")
