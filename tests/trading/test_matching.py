"""The pure matching core: price-time priority, maker price, partial fills, IOC/FOK, self-trade prevention, GTD."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from models.trading import OrderStatus, OrderType, Side, TimeInForce
from resolvers.trading.matching import BookOrder, Incoming, OrderBook, match

NOW = datetime(2026, 1, 1, tzinfo=UTC)
D = Decimal


def lim(oid, owner, side, qty, price, tif=TimeInForce.GTC, expires_at=None):  # type: ignore[no-untyped-def]
    return Incoming(oid, owner, side, OrderType.LIMIT, tif, D(price), D(qty), expires_at=expires_at)


def mkt(oid, owner, side, qty, cap=None, tif=TimeInForce.IOC):  # type: ignore[no-untyped-def]
    return Incoming(oid, owner, side, OrderType.MARKET, tif, None if cap is None else D(cap), D(qty))


def fills(result):  # type: ignore[no-untyped-def]
    return [(f.maker_id, f.price, f.quantity) for f in result.fills]


def test_price_then_time_priority_and_maker_price():
    book = OrderBook()
    book.submit(lim("a1", "s1", Side.SELL, 5, "10.0"))
    book.submit(lim("a2", "s2", Side.SELL, 5, "9.5"))
    book.submit(lim("a3", "s3", Side.SELL, 5, "9.5"))  # same price, later: after a2
    r = book.submit(lim("b1", "b", Side.BUY, 12, "10.0"))
    assert fills(r) == [("a2", D("9.5"), 5), ("a3", D("9.5"), 5), ("a1", D("10.0"), 2)]
    assert r.status is OrderStatus.FILLED and r.filled == 12
    assert book.asks.depth(5) == [(D("10.0"), D(3))]


def test_partial_fill_rests_remainder_at_limit():
    book = OrderBook()
    book.submit(lim("a", "s", Side.SELL, 3, "5"))
    r = book.submit(lim("b", "b", Side.BUY, 10, "6"))
    assert fills(r) == [("a", D(5), 3)]
    assert r.status is OrderStatus.PARTIALLY_FILLED and r.rests and r.remaining == 7
    assert book.bids.depth(1) == [(D(6), D(7))] and book.asks.depth(1) == []


def test_no_cross_rests_new():
    book = OrderBook()
    book.submit(lim("a", "s", Side.SELL, 3, "5"))
    r = book.submit(lim("b", "b", Side.BUY, 1, "4.99"))
    assert r.fills == [] and r.status is OrderStatus.NEW and r.rests


def test_ioc_fills_what_it_can_and_cancels_the_rest():
    book = OrderBook()
    book.submit(lim("a", "s", Side.SELL, 3, "5"))
    r = book.submit(lim("b", "b", Side.BUY, 10, "5", TimeInForce.IOC))
    assert fills(r) == [("a", D(5), 3)]
    assert r.status is OrderStatus.CANCELED and r.reason == "IOC_UNFILLED" and not r.rests
    assert book.bids.depth(1) == []


def test_fok_all_or_nothing_checked_before_any_fill():
    book = OrderBook()
    book.submit(lim("a1", "s", Side.SELL, 3, "5"))
    book.submit(lim("a2", "s", Side.SELL, 3, "7"))  # beyond the limit
    r = book.submit(lim("b", "b", Side.BUY, 5, "6", TimeInForce.FOK))
    assert r.fills == [] and r.status is OrderStatus.CANCELED and r.reason == "FOK_UNFILLABLE"
    assert book.asks.depth(5) == [(D(5), D(3)), (D(7), D(3))]  # untouched
    r = book.submit(lim("b2", "b", Side.BUY, 6, "7", TimeInForce.FOK))
    assert fills(r) == [("a1", D(5), 3), ("a2", D(7), 3)] and r.status is OrderStatus.FILLED


def test_market_orders_never_rest_and_respect_the_cap():
    book = OrderBook()
    book.submit(lim("a1", "s", Side.SELL, 2, "5"))
    book.submit(lim("a2", "s", Side.SELL, 2, "8"))
    r = book.submit(mkt("m", "b", Side.BUY, 10, cap="6"))
    assert fills(r) == [("a1", D(5), 2)] and r.status is OrderStatus.CANCELED and r.reason == "NO_LIQUIDITY"
    r = book.submit(mkt("m2", "b", Side.BUY, 1))
    assert fills(r) == [("a2", D(8), 1)] and r.status is OrderStatus.FILLED


def test_self_trade_prevention_cancels_the_taker_and_keeps_the_resting_order():
    book = OrderBook()
    book.submit(lim("a1", "other", Side.SELL, 2, "5"))
    book.submit(lim("a2", "me", Side.SELL, 2, "5"))
    book.submit(lim("a3", "other", Side.SELL, 2, "5"))
    r = book.submit(lim("b", "me", Side.BUY, 6, "5"))
    assert fills(r) == [("a1", D(5), 2)]  # stops at its own order
    assert r.status is OrderStatus.CANCELED and r.reason == "SELF_TRADE_PREVENTED" and not r.rests
    assert "a2" in book.index and book.asks.depth(1) == [(D(5), D(4))]


def test_fok_counts_only_liquidity_ahead_of_own_orders():
    book = OrderBook()
    book.submit(lim("a1", "other", Side.SELL, 2, "5"))
    book.submit(lim("a2", "me", Side.SELL, 2, "5"))
    book.submit(lim("a3", "other", Side.SELL, 5, "5"))
    r = book.submit(lim("b", "me", Side.BUY, 4, "5", TimeInForce.FOK))
    assert r.fills == [] and r.reason == "FOK_UNFILLABLE"


def test_gtd_orders_past_due_are_expired_not_filled():
    book = OrderBook()
    book.submit(lim("old", "s", Side.SELL, 5, "5", TimeInForce.GTD, expires_at=NOW - timedelta(seconds=1)), NOW)
    book.submit(lim("live", "s2", Side.SELL, 5, "6", TimeInForce.GTD, expires_at=NOW + timedelta(hours=1)), NOW)
    r = book.submit(lim("b", "b", Side.BUY, 5, "6"), NOW)
    assert r.expired_makers == ["old"] and fills(r) == [("live", D(6), 5)]
    assert "old" not in book.index


def test_expire_sweeps_due_orders():
    book = OrderBook()
    book.submit(lim("g", "s", Side.BUY, 1, "5", TimeInForce.GTD, expires_at=NOW + timedelta(minutes=1)))
    book.submit(lim("k", "s", Side.BUY, 1, "5"))
    assert book.expire(NOW) == []
    assert book.expire(NOW + timedelta(minutes=1)) == ["g"]
    assert list(book.index) == ["k"]


def test_quantity_conserved_over_random_flow():
    import random

    rng = random.Random(7)
    book = OrderBook()
    placed: dict[int, Decimal] = {}
    filled: dict[int, Decimal] = {}
    for i in range(3000):
        side = rng.choice([Side.BUY, Side.SELL])
        qty = D(rng.randint(1, 20))
        price = D(rng.randint(90, 110))
        tif = rng.choice([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK])
        r = book.submit(lim(i, rng.randint(0, 9), side, qty, price, tif))
        placed[i] = qty
        filled[i] = filled.get(i, D(0)) + r.filled
        for f in r.fills:
            filled[f.maker_id] = filled.get(f.maker_id, D(0)) + f.quantity
            assert (f.price <= price) if side is Side.BUY else (f.price >= price)
        if i % 50 == 0 and book.index:
            book.cancel(rng.choice(list(book.index)))
    assert all(filled[i] <= placed[i] for i in placed)
    for order in book.index.values():
        assert order.remaining == placed[order.id] - filled[order.id]
    bids, asks = book.bids.depth(1), book.asks.depth(1)
    assert not bids or not asks or bids[0][0] < asks[0][0]  # the book is never crossed


def test_match_does_not_mutate_inputs():
    resting = [BookOrder("a", "s", Side.SELL, D(5), D(3), 1)]
    match(lim("b", "b", Side.BUY, 2, "5"), resting)
    assert resting[0].remaining == 3
