"""Market data subscriptions over graphql-transport-ws, fed by Redis pub/sub (resolvers/trading/market_data.py).

Market data is public (schema/permissions.public_market_data: no login needed unless MARKET_DATA_REQUIRES_LOGIN;
anonymous callers rate-limited per IP). The market-data fields are declared SHARED_WITH_SNAPSHOT (schema/sharing.py):
each runs once per process per distinct operation (schema/__init__.py: RwaSchema.stream shares it), every subscriber
starts with the current state (a late joiner gets a fresh snapshot: the field run with `snapshot_only`), and a DB
session is open only for the moment a snapshot is read, never across events. `myOrders` is PRIVATE: executed for
each subscriber alone.

- `orderBook` starts with a snapshot; then deltas with consecutive `sequence`s. When the resolver sees a gap (a
  message lost or reordered between API processes) or its listener dropped messages, it sends a fresh snapshot
  instead (`snapshot: true`); a client that sees a gap itself resubscribes.
- `trades` works the same way over the market's trade sequence (1, 2, 3... per market): a snapshot of the latest
  `last` trades, then one message per trade.
- `ticker` and `candles` start with the current ticker / candle, then follow every change.
- `myOrders` is per user; the socket is closed (4401) when the access token it authenticated with expires.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.types import Info

from core.errors import BadUserInput
from models.trading import OrderStatus, OrderType, Side, TimeInForce
from resolvers.assets.validation import trim
from resolvers.trading import candles as candle_rules
from resolvers.trading import market_data
from resolvers.trading.orders import OrderView
from schema.lookups import found
from schema.permissions import authenticated, public_market_data
from schema.personal_streams import personal_stream
from schema.sharing import PRIVATE, SHARED_WITH_SNAPSHOT
from schema.trading import (
    Candle,
    CandleInterval,
    Order,
    OrderBook,
    Trade,
    book_of,
    candle_of,
    check_depth,
    levels,
    trade_of,
)

MAX_TRADES_SNAPSHOT = market_data.MAX_TRADES_SNAPSHOT


@strawberry.type(
    description=(
        "Trades of a market: first a snapshot of the latest trades (`snapshot: true`), then one message per new trade. "
        "`sequence` is the market's trade sequence of the newest trade in the message (1, 2, 3... per market; 0 before "
        "the first trade): consecutive messages have consecutive sequences, so a gap means a message was lost. The "
        "server answers a gap it sees with a fresh snapshot; merge snapshots by trade sequence."
    )
)
class TradeUpdate:
    market_id: uuid.UUID
    sequence: int
    snapshot: bool
    trades: list[Trade] = strawberry.field(description="Oldest first.")


@strawberry.type(description="Last price, best bid/ask and the last 24 hours.")
class Ticker:
    market_id: uuid.UUID
    sequence: int
    last: Decimal | None
    best_bid: Decimal | None
    best_ask: Decimal | None
    change_24h: Decimal | None
    volume_24h: Decimal
    high_24h: Decimal | None
    low_24h: Decimal | None


def _d(value: Decimal | None) -> Decimal | None:
    return None if value is None else trim(Decimal(value))


def trade_of_event(e: dict[str, Any]) -> Trade:
    return Trade(
        id=uuid.UUID(e["id"]),
        sequence=e["sequence"],
        market_id=uuid.UUID(e["marketId"]),
        price=trim(Decimal(e["price"])),
        quantity=trim(Decimal(e["quantity"])),
        taker_side=Side(e["takerSide"]),
        created_at=datetime.fromisoformat(e["createdAt"]),
    )


def order_of_event(e: dict[str, Any]) -> Order:
    def dt(v: str | None) -> datetime | None:
        return None if v is None else datetime.fromisoformat(v)

    view = OrderView(
        id=uuid.UUID(e["id"]),
        seq=e["seq"],
        market_id=uuid.UUID(e["market_id"]),
        user_id=uuid.UUID(e["user_id"]),
        client_order_id=e["client_order_id"],
        side=Side(e["side"]),
        type=OrderType(e["type"]),
        time_in_force=TimeInForce(e["time_in_force"]),
        price=None if e["price"] is None else Decimal(e["price"]),
        quantity=Decimal(e["quantity"]),
        filled_quantity=Decimal(e["filled_quantity"]),
        status=OrderStatus(e["status"]),
        reason=e["reason"],
        expires_at=dt(e["expires_at"]),
        wallet_address=e["wallet_address"],
        reserved_cash=Decimal(e["reserved_cash"]),
        created_at=datetime.fromisoformat(e["created_at"]),
        updated_at=datetime.fromisoformat(e["updated_at"]),
    )
    return Order.of(view)


async def _snapshot(info: Info, market_id: uuid.UUID, depth: int) -> OrderBook:
    async with info.context.services.session_factory() as session:
        return book_of(await market_data.book_snapshot(session, market_id, depth))


async def _ticker(info: Info, market_id: uuid.UUID) -> Ticker:
    async with info.context.services.session_factory() as session:
        t = await market_data.ticker(session, market_id, datetime.now(UTC))
    return Ticker(
        market_id=t.market_id,
        sequence=t.sequence,
        last=_d(t.last),
        best_bid=_d(t.best_bid),
        best_ask=_d(t.best_ask),
        change_24h=_d(t.change_24h),
        volume_24h=trim(t.volume_24h),
        high_24h=_d(t.high_24h),
        low_24h=_d(t.low_24h),
    )


async def _candle(
    info: Info, market_id: uuid.UUID, interval: candle_rules.CandleInterval, at: datetime
) -> Candle | None:
    start = candle_rules.bucket_of(at, interval)
    async with info.context.services.session_factory() as session:
        rows = await candle_rules.aggregate(session, market_id, interval, start, start + candle_rules.STEP[interval])
    return candle_of(rows[0]) if rows else None


async def _current_candle(info: Info, market_id: uuid.UUID, interval: candle_rules.CandleInterval) -> Candle | None:
    async with info.context.services.session_factory() as session:
        await market_data.book_snapshot(session, market_id, 1)  # NOT_FOUND for an unknown market
        row = await candle_rules.current(session, market_id, interval, datetime.now(UTC))
    return None if row is None else candle_of(row)


async def _trades_snapshot(info: Info, market_id: uuid.UUID, last: int) -> TradeUpdate:
    async with info.context.services.session_factory() as session:
        snap = await market_data.trades_snapshot(session, market_id, last)
    return TradeUpdate(
        market_id=market_id, sequence=snap.sequence, snapshot=True, trades=[trade_of(t) for t in snap.trades]
    )


async def _sequenced(
    info: Info, channel: str, snapshot: Callable[[], Awaitable[Any]], delta: Callable[[int, dict[str, Any]], Any]
) -> AsyncGenerator[Any, None]:
    """A snapshot, then one delta per event with consecutive `sequence`s (orderBook, trades). An event already in
    the snapshot is skipped; a gap (a message lost or reordered between API processes) or messages dropped by the
    listener is answered with a fresh snapshot. Listening starts before the snapshot is read, so nothing committed
    after it is missed; the snapshot raises NOT_FOUND for an unknown market."""
    async with info.context.services.pubsub.listen(channel) as events:
        snap = await snapshot()
        seen = snap.sequence
        yield snap
        async for payload in events:
            e = json.loads(payload)
            seq = e["sequence"]
            if seq <= seen:
                continue  # already in the snapshot
            if seq != seen + 1 or events.dropped:
                events.dropped = 0
                snap = await snapshot()
                seen = snap.sequence
                yield snap
                continue
            seen = seq
            yield delta(seq, e)


def check_last(last: int) -> None:
    if not 0 <= last <= MAX_TRADES_SNAPSHOT:
        raise BadUserInput(f"last must be between 0 and {MAX_TRADES_SNAPSHOT}", field="last")


def _drain(events: Any) -> Any:
    """Coalesce: only the newest queued message matters for recomputed views (ticker, candles)."""
    last = None
    while not events.queue.empty():
        last = events.queue.get_nowait()
    return last


@strawberry.type
class Query:
    @strawberry.field(
        extensions=public_market_data(),
        description=("A market's ticker now (as the subscription's first message); null for an unknown market."),
    )
    async def ticker(self, info: Info, market_id: uuid.UUID) -> Ticker | None:
        return await found(_ticker(info, market_id))


@strawberry.type
class Subscription:
    @strawberry.subscription(
        extensions=public_market_data(),
        metadata=SHARED_WITH_SNAPSHOT,
        description=(
            "The latest `last` trades of a market (snapshot), then each trade as it happens, with the market's trade "
            "sequence (see TradeUpdate)."
        ),
    )
    async def trades(self, info: Info, market_id: uuid.UUID, last: int = 50) -> AsyncGenerator[TradeUpdate, None]:
        check_last(last)
        if getattr(info.context, "snapshot_only", False):
            yield await _trades_snapshot(info, market_id, last)
            return
        stream = _sequenced(
            info,
            market_data.trades_channel(market_id),
            lambda: _trades_snapshot(info, market_id, last),
            lambda seq, e: TradeUpdate(market_id=market_id, sequence=seq, snapshot=False, trades=[trade_of_event(e)]),
        )
        async with aclosing(stream):  # an unsubscribe closes the listener now, not at garbage collection
            async for update in stream:
                yield update

    @strawberry.subscription(
        extensions=public_market_data(),
        metadata=SHARED_WITH_SNAPSHOT,
        description=(
            "A snapshot of the top `depth` levels, then deltas (changed levels, quantity 0 = gone), each with the "
            "market's book sequence. Deltas may touch levels beyond `depth`."
        ),
    )
    async def order_book(self, info: Info, market_id: uuid.UUID, depth: int = 20) -> AsyncGenerator[OrderBook, None]:
        check_depth(depth)
        if getattr(info.context, "snapshot_only", False):
            yield await _snapshot(info, market_id, depth)
            return
        stream = _sequenced(
            info,
            market_data.book_channel(market_id),
            lambda: _snapshot(info, market_id, depth),
            lambda seq, e: OrderBook(
                market_id=market_id, sequence=seq, snapshot=False, bids=levels(e["bids"]), asks=levels(e["asks"])
            ),
        )
        async with aclosing(stream):
            async for update in stream:
                yield update

    @strawberry.subscription(
        extensions=public_market_data(),
        metadata=SHARED_WITH_SNAPSHOT,
        description="The ticker now, then on every book change.",
    )
    async def ticker(self, info: Info, market_id: uuid.UUID) -> AsyncGenerator[Ticker, None]:
        if getattr(info.context, "snapshot_only", False):
            yield await _ticker(info, market_id)
            return
        async with info.context.services.pubsub.listen(market_data.book_channel(market_id)) as events:
            yield await _ticker(info, market_id)
            async for _ in events:
                _drain(events)
                yield await _ticker(info, market_id)

    @strawberry.subscription(
        extensions=public_market_data(),
        metadata=SHARED_WITH_SNAPSHOT,
        description=(
            "The current candle (for an interval without trades yet, a flat one at the last price with volume 0), then "
            "the candle of each trade as it happens. A market that never traded sends nothing until its first trade."
        ),
    )
    async def candles(self, info: Info, market_id: uuid.UUID, interval: CandleInterval) -> AsyncGenerator[Candle, None]:
        if getattr(info.context, "snapshot_only", False):
            current = await _current_candle(info, market_id, interval)
            if current is not None:
                yield current
            return
        async with info.context.services.pubsub.listen(market_data.trades_channel(market_id)) as events:
            current = await _current_candle(info, market_id, interval)
            if current is not None:
                yield current
            async for payload in events:
                payload = _drain(events) or payload
                at = datetime.fromisoformat(json.loads(payload)["createdAt"])
                candle = await _candle(info, market_id, interval, at)
                if candle is not None:
                    yield candle

    @strawberry.subscription(
        extensions=authenticated(),
        metadata=PRIVATE,
        description=("The caller's order updates. The socket closes (code 4401) when its access token expires."),
    )
    async def my_orders(self, info: Info) -> AsyncGenerator[Order, None]:
        user_id = info.context.viewer.require_user()
        # closed with this generator (the channel unsubscribed when the client completes), not when collected
        async with aclosing(personal_stream(info, market_data.orders_channel(user_id))) as events:
            async for event in events:
                yield order_of_event(event)
