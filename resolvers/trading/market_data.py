"""Market data events: published to Redis after the matching transaction commits, fanned out to every API process
(core/pubsub.PubSubHub), read back by the subscriptions in schema/market_data.py.

Channels (under the deployment's Redis prefix):
    market:<id>:trades   one message per trade (`sequence` = the market's trade sequence: consecutive per market,
                         so a gap means a lost or reordered message, answered with a fresh snapshot)
    market:<id>:book     one message per book change: changed levels with their new totals (0 = level gone),
                         `sequence` = the market's book sequence (consecutive; a gap means a lost or reordered
                         message, and the subscription answers it with a fresh snapshot)
    user:<id>:orders     the caller's order updates (myOrders)

Snapshot reads (order book, ticker, current candle) open their own short DB session per use.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from redis.exceptions import NoPermissionError, NoScriptError, ResponseError
from sqlalchemy import and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from models.trading import OPEN_STATUSES, Market, Order, Side, Trade
from resolvers.trading import book

log = logging.getLogger("rwa.trading.market_data")


def trades_channel(market_id: uuid.UUID | str) -> str:
    return f"market:{market_id}:trades"


def book_channel(market_id: uuid.UUID | str) -> str:
    return f"market:{market_id}:book"


def orders_channel(user_id: uuid.UUID | str) -> str:
    return f"user:{user_id}:orders"


def _default(value: Any) -> Any:
    """What orjson does not encode itself: Decimals, and the UUIDs asyncpg returns (a subclass orjson leaves to this
    hook; uuid.UUID it encodes natively)."""
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    raise TypeError(type(value).__name__)


def encode(event: dict[str, Any]) -> bytes:
    """The event as compact JSON: UUIDs and Decimals as strings, datetimes in ISO 8601 (`datetime.isoformat`), enums
    as their values; UTF-8 (orjson: the C encoder, ~10x the standard library's with its default hook)."""
    return orjson.dumps(event, default=_default)


@dataclass
class Events:
    """What one committed transaction announces, published in order after commit.

    `sent` is set when the messages are handed to the sender (`queue`): once per Events, so a transaction's events
    go out exactly once however many times `publish` is called with them (the task that committed hands them over
    right after its commit; the caller that asked for the work only waits for them)."""

    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sent: asyncio.Future[None] | None = None

    def add(self, channel: str, event: dict[str, Any]) -> None:
        self.messages.append((channel, event))


@dataclass
class _Outbox:
    """One hub's messages waiting for Redis, sent by one task in arrival order; each caller waits for the round trip
    that carries its messages."""

    hub: Any
    pending: list[bytes | str] = field(default_factory=list)  # channel, data, channel, data...
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


_outboxes: dict[int, _Outbox] = {}

# Every message of a round trip published by one script: one command to pack and one reply to parse for all of them
# (a pipeline has one of each per message: ~3x the client CPU per message in redis-py). PUBLISH in a script reaches
# subscribers as it does alone, in the order of the calls; the script touches no key.
_PUBLISH_ALL = "for i = 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end return #ARGV / 2"
_PUBLISH_ALL_SHA = hashlib.sha1(_PUBLISH_ALL.encode()).hexdigest()


def queue(hub: Any, events: Events) -> asyncio.Future[None] | None:
    """Hand the events to the hub's sender now, without waiting: the committer calls this right after its commit
    (no await in between), so the messages go out in commit order whether or not anyone waits for them. Once per
    Events (later calls return the same future). Returns the future done once they were sent (or failed: logged),
    None when there is nothing to send."""
    if events.sent is not None or not events.messages:
        return events.sent
    loop = asyncio.get_running_loop()
    box = _outboxes.get(id(hub))
    if box is None or box.hub is not hub or (box.task is not None and box.task.get_loop() is not loop):
        box = _outboxes[id(hub)] = _Outbox(hub)
    prefix, pending = hub.prefix, box.pending
    for channel, event in events.messages:
        pending.append(prefix + channel)
        pending.append(encode(event))
    done = events.sent = loop.create_future()
    box.waiters.append(done)
    if box.task is None:
        box.task = asyncio.create_task(_send(box), name="market-data-publish")
    return done


async def publish(hub: Any, events: Events) -> None:
    """Best effort: the trade is committed whatever Redis says; book subscribers resync from snapshots on gaps.

    Messages go out in the order they were queued (each call's in its order), each exactly once (`queue`). Calls
    that arrive while a round trip is on its way share the next one (the placements of one sequencer batch are
    queued together: one round trip and one command's CPU for many, instead of one each). Returns once these
    messages were sent (or failed: logged)."""
    done = events.sent or queue(hub, events)
    if done is not None and not done.done():
        # this call's own future: a caller that goes away cancels only its wait, never the others' messages
        await done


async def flush(timeout: float) -> bool:
    """Wait (at most `timeout` seconds) until every queued message was sent: on shutdown, before the Redis client
    closes. True when nothing is left."""
    senders = [box.task for box in list(_outboxes.values()) if box.task is not None]
    if not senders:
        return True
    _, left = await asyncio.wait(senders, timeout=timeout)
    if left:
        log.warning("market data: %d sender(s) still busy after %.1fs at shutdown", len(left), timeout)
    return not left


async def _publish_all(redis: Any, args: list[bytes | str]) -> None:
    """PUBLISH each (channel, data) pair of `args` in order, in one command. A server that does not have the script
    yet refuses EVALSHA before running anything, so EVAL after it publishes each message once; one that refuses
    scripts (an ACL without EVAL: NOPERM, or a proxy without the command) gets a pipeline of PUBLISH instead."""
    try:
        try:
            await redis.evalsha(_PUBLISH_ALL_SHA, 0, *args)
        except NoScriptError:
            await redis.eval(_PUBLISH_ALL, 0, *args)
    except ResponseError as exc:
        if not isinstance(exc, NoPermissionError) and "unknown command" not in str(exc):
            raise
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(0, len(args), 2):
                pipe.publish(args[i], args[i + 1])
            await pipe.execute()


async def _send(box: _Outbox) -> None:
    try:
        while box.pending:
            batch, box.pending = box.pending, []
            waiters, box.waiters = box.waiters, []
            try:
                await _publish_all(box.hub.redis, batch)
            except Exception:
                log.warning("could not publish %s", ", ".join(sorted(set(map(str, batch[0::2])))), exc_info=True)
            finally:
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
    finally:
        box.task = None
        for w in box.waiters:  # only if cancelled (shutdown): nobody is left waiting
            if not w.done():
                w.set_result(None)
        box.waiters, box.pending = [], []
        if _outboxes.get(id(box.hub)) is box:
            del _outboxes[id(box.hub)]


def book_event(market_id: uuid.UUID, sequence: int, levels: list[tuple[Side, Decimal, Decimal]]) -> dict[str, Any]:
    return {
        "marketId": market_id,
        "sequence": sequence,
        "snapshot": False,
        "bids": [[p, q] for s, p, q in levels if s is Side.BUY],
        "asks": [[p, q] for s, p, q in levels if s is Side.SELL],
    }


@dataclass(frozen=True)
class BookSnapshot:
    market_id: uuid.UUID
    sequence: int
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]


async def book_snapshot(session: AsyncSession, market_id: uuid.UUID, depth: int) -> BookSnapshot:
    # one REPEATABLE READ-like view is not needed: the sequence is read first, so levels are at least that new and
    # a delta with a higher sequence that was already included is idempotent (it carries absolute totals)
    seq = (await session.execute(select(Market.book_sequence).where(Market.id == market_id))).scalar_one_or_none()
    if seq is None:
        from core.errors import NotFound

        raise NotFound("market not found", field="marketId")
    bids = await book.depth(session, market_id, Side.BUY, depth)
    asks = await book.depth(session, market_id, Side.SELL, depth)
    return BookSnapshot(market_id, seq, bids, asks)


@dataclass(frozen=True)
class TickerData:
    market_id: uuid.UUID
    last: Decimal | None
    best_bid: Decimal | None
    best_ask: Decimal | None
    change_24h: Decimal | None
    volume_24h: Decimal
    high_24h: Decimal | None
    low_24h: Decimal | None
    sequence: int


async def ticker(session: AsyncSession, market_id: uuid.UUID, now: datetime) -> TickerData:
    """The market's ticker from ONE statement, so the book and the trades are one snapshot: separate reads on an
    autocommit session could take the best ask from before a trade and the last price from after it (a ticker
    with last 4 and the 4 ask that trade consumed still on offer, seen under load)."""
    since = now - timedelta(hours=24)
    mine = Trade.market_id == market_id
    in_window = and_(mine, Trade.created_at >= since)

    def best(side: Side) -> Any:
        price = func.max(Order.price) if side is Side.BUY else func.min(Order.price)
        resting = and_(Order.market_id == market_id, Order.side == side, Order.status.in_(OPEN_STATUSES))
        return select(price).where(resting).scalar_subquery()

    row = (
        await session.execute(
            select(
                select(Market.book_sequence).where(Market.id == market_id).scalar_subquery(),
                best(Side.BUY),
                best(Side.SELL),
                select(Trade.price).where(mine).order_by(Trade.seq.desc()).limit(1).scalar_subquery(),
                select(Trade.price).where(in_window).order_by(Trade.seq.asc()).limit(1).scalar_subquery(),
                select(func.max(Trade.price)).where(in_window).scalar_subquery(),
                select(func.min(Trade.price)).where(in_window).scalar_subquery(),
                select(func.coalesce(func.sum(Trade.quantity), 0)).where(in_window).scalar_subquery(),
            )
        )
    ).one()
    sequence, best_bid, best_ask, last, first, high, low, volume = row
    if sequence is None:
        raise NotFound("market not found", field="marketId")
    return TickerData(
        market_id,
        last,
        best_bid,
        best_ask,
        (last - first) if (last is not None and first is not None) else None,
        Decimal(volume),
        high,
        low,
        sequence,
    )


MAX_TRADES_SNAPSHOT = 200


@dataclass(frozen=True)
class TradesSnapshot:
    market_id: uuid.UUID
    sequence: int  # the market's trade sequence: the newest trade's, 0 before the first
    trades: list[Trade]  # oldest first


_TRADES_SNAPSHOT = text("""
SELECT m.trade_sequence, t.id, t.market_sequence, t.price, t.quantity, t.taker_side::text, t.created_at
FROM markets m
LEFT JOIN LATERAL (SELECT * FROM trades WHERE market_id = m.id ORDER BY market_sequence DESC LIMIT :limit) t ON true
WHERE m.id = :market""")


async def trades_snapshot(session: AsyncSession, market_id: uuid.UUID, limit: int) -> TradesSnapshot:
    """The latest `limit` trades of a market with its trade sequence, in one statement (one consistent view: the
    sequence is the newest trade's). NOT_FOUND for an unknown market."""
    rows = (await session.execute(_TRADES_SNAPSHOT, {"market": market_id, "limit": limit})).all()
    if not rows:
        raise NotFound("market not found", field="marketId")
    trades = [
        Trade(
            id=r[1],
            market_id=market_id,
            market_sequence=r[2],
            price=r[3],
            quantity=r[4],
            taker_side=Side(r[5]),
            created_at=r[6],
        )
        for r in rows
        if r[1] is not None
    ]
    return TradesSnapshot(market_id, rows[0][0], trades[::-1])
