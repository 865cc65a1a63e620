"""The matching core: price-time priority, pure and in memory (no I/O), so it is unit-tested and benchmarked alone.

`match(taker, resting, now)` takes the incoming order and the opposite side's resting orders in priority order
(best price first, then arrival `seq`) and decides fills and state changes; the caller (resolvers/trading/book.py)
persists them under the market's lock. `OrderBook` keeps a whole book in memory on top of `match` (tests, bench).

Rules:
- trades execute at the resting (maker) order's price; a taker fills level by level while prices cross;
- self-trade prevention is "cancel the taker": when the next resting order belongs to the taker's owner, the
  taker's remaining quantity is canceled (reason SELF_TRADE_PREVENTED) and the resting order is untouched, so a
  user's earlier order never disappears because of a later one;
- IOC fills what it can and cancels the rest; MARKET orders never rest (IOC unless FOK);
- FOK checks, before any fill, that crossing liquidity ahead of any own order covers the whole quantity,
  otherwise the order is canceled (FOK_UNFILLABLE) with no fill;
- GTD resting orders seen past their `expires_at` are expired (never filled) as the taker walks over them.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Generic, TypeVar

from models.trading import OrderStatus, OrderType, Side, TimeInForce

ZERO = Decimal(0)
# the ids of orders and of their owners: UUIDs in the API (resolvers/trading/book.py), anything hashable in tests
K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class BookOrder(Generic[K]):
    """A resting order as the matching core sees it."""

    id: K
    owner: K
    side: Side
    price: Decimal
    remaining: Decimal
    seq: int
    expires_at: datetime | None = None
    barred: bool = False  # may not trade any more (KYC not APPROVED, wallet frozen): taken off the book, never filled


@dataclass(slots=True)
class Incoming(Generic[K]):
    id: K
    owner: K
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: Decimal | None  # None: a MARKET order without a price cap
    quantity: Decimal
    seq: int = 0
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Fill(Generic[K]):
    maker_id: K
    taker_id: K
    price: Decimal
    quantity: Decimal
    maker_remaining: Decimal  # after this fill


@dataclass(slots=True)
class MatchResult(Generic[K]):
    fills: list[Fill[K]] = field(default_factory=list)
    filled: Decimal = ZERO
    remaining: Decimal = ZERO
    status: OrderStatus = OrderStatus.NEW
    reason: str | None = None
    rests: bool = False  # the remainder goes on the book
    expired_makers: list[K] = field(default_factory=list)


def crosses(taker_side: Side, limit: Decimal | None, resting_price: Decimal) -> bool:
    if limit is None:
        return True
    return resting_price <= limit if taker_side is Side.BUY else resting_price >= limit


def _live(o: BookOrder[K], now: datetime | None) -> bool:
    """Whether the resting order may fill; one that may not (GTD past `expires_at`, or `barred`) is taken off the
    book as the taker walks over it (`expired_makers`; its writer picks the status and reason)."""
    return not o.barred and (o.expires_at is None or now is None or o.expires_at > now)


def match(taker: Incoming[K], resting: Iterable[BookOrder[K]], now: datetime | None = None) -> MatchResult[K]:
    """Match `taker` against `resting` (opposite side, priority order). Does not mutate the inputs."""
    with localcontext(prec=100):  # Numeric(38, 18) quantities need more than the default 28 digits
        return _match(taker, resting, now)


def _match(taker: Incoming[K], resting: Iterable[BookOrder[K]], now: datetime | None) -> MatchResult[K]:
    result: MatchResult[K] = MatchResult(remaining=taker.quantity)
    is_ioc = taker.type is OrderType.MARKET or taker.time_in_force in (TimeInForce.IOC, TimeInForce.FOK)
    candidates: Iterable[BookOrder[K]] = resting
    if taker.time_in_force is TimeInForce.FOK:
        seen: list[BookOrder[K]] = []
        available = ZERO
        for o in resting:
            seen.append(o)
            if not crosses(taker.side, taker.price, o.price):
                break
            if not _live(o, now):
                continue
            if o.owner == taker.owner:
                break  # self-trade prevention would stop the fill here
            available += o.remaining
            if available >= taker.quantity:
                break
        if available < taker.quantity:
            result.status, result.reason = OrderStatus.CANCELED, "FOK_UNFILLABLE"
            result.expired_makers = [o.id for o in seen if not _live(o, now)]
            return result
        candidates = seen
    remaining = taker.quantity
    for o in candidates:
        if remaining <= 0 or not crosses(taker.side, taker.price, o.price):
            break
        if not _live(o, now):
            result.expired_makers.append(o.id)
            continue
        if o.owner == taker.owner:
            result.reason = "SELF_TRADE_PREVENTED"
            break
        qty = min(remaining, o.remaining)
        remaining -= qty
        result.fills.append(Fill(o.id, taker.id, o.price, qty, o.remaining - qty))
    result.remaining = remaining
    result.filled = taker.quantity - remaining
    if remaining == 0:
        result.status, result.reason = OrderStatus.FILLED, None
    elif result.reason == "SELF_TRADE_PREVENTED" or is_ioc:
        result.status = OrderStatus.CANCELED
        result.reason = result.reason or ("IOC_UNFILLED" if taker.type is OrderType.LIMIT else "NO_LIQUIDITY")
    else:
        result.rests = True
        result.status = OrderStatus.PARTIALLY_FILLED if result.filled else OrderStatus.NEW
    return result


class _Side(Generic[K]):
    """One side of an in-memory book: sorted price levels, FIFO queue per level."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.prices: list[Decimal] = []  # ascending
        self.levels: dict[Decimal, deque[BookOrder[K]]] = {}

    def add(self, order: BookOrder[K]) -> None:
        level = self.levels.get(order.price)
        if level is None:
            level = self.levels[order.price] = deque()
            bisect.insort(self.prices, order.price)
        level.append(order)

    def remove_level_if_empty(self, price: Decimal) -> None:
        level = self.levels.get(price)
        if level is not None and not level:
            del self.levels[price]
            self.prices.pop(bisect.bisect_left(self.prices, price))

    def in_priority(self) -> Iterator[BookOrder[K]]:
        # lazy and without copies: `match` stops at the first non-crossing price, and the book is only changed
        # after it returns
        ordered = reversed(self.prices) if self.side is Side.BUY else iter(self.prices)
        for price in ordered:
            yield from self.levels[price]

    def depth(self, n: int) -> list[tuple[Decimal, Decimal]]:
        ordered = list(reversed(self.prices) if self.side is Side.BUY else self.prices)[:n]
        return [(p, sum((o.remaining for o in self.levels[p]), ZERO)) for p in ordered]


class OrderBook(Generic[K]):
    """A whole book in memory, driven by `match`; used by unit tests and the matching benchmark."""

    def __init__(self) -> None:
        self.bids: _Side[K] = _Side(Side.BUY)
        self.asks: _Side[K] = _Side(Side.SELL)
        self.index: dict[K, BookOrder[K]] = {}
        self._seq = 0

    def submit(self, taker: Incoming[K], now: datetime | None = None) -> MatchResult[K]:
        self._seq += 1
        taker.seq = taker.seq or self._seq
        opposite = self.asks if taker.side is Side.BUY else self.bids
        result = match(taker, opposite.in_priority(), now)
        for maker_id in result.expired_makers:
            self._remove(maker_id)
        for fill in result.fills:
            maker = self.index[fill.maker_id]
            maker.remaining = fill.maker_remaining
            if maker.remaining == 0:
                self._remove(fill.maker_id)
        if result.rests:
            assert taker.price is not None
            order = BookOrder(
                taker.id, taker.owner, taker.side, taker.price, result.remaining, taker.seq, taker.expires_at
            )
            (self.bids if taker.side is Side.BUY else self.asks).add(order)
            self.index[taker.id] = order
        return result

    def cancel(self, order_id: K) -> bool:
        return self._remove(order_id)

    def expire(self, now: datetime) -> list[K]:
        due = [o.id for o in self.index.values() if o.expires_at is not None and o.expires_at <= now]
        for order_id in due:
            self._remove(order_id)
        return due

    def _remove(self, order_id: K) -> bool:
        order = self.index.pop(order_id, None)
        if order is None:
            return False
        side = self.bids if order.side is Side.BUY else self.asks
        side.levels[order.price].remove(order)
        side.remove_level_if_empty(order.price)
        return True
