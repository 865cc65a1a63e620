"""Benchmark (issue 5b): the pure matching core in-process (resolvers/trading/matching.py), orders/s.

    .venv/bin/python -m bench.trading_matching [--orders 200000]

Flows: `resting` (non-crossing limits: insert cost), `mixed` (random limits around a mid price, ~half cross,
IOC/FOK mixed in, periodic cancels) and, as the baseline measured in the same run, the same `mixed` orders only
built and handed to an empty `match` call (the per-order overhead outside the book).
"""

from __future__ import annotations

import argparse
import random
import time
from decimal import Decimal

from models.trading import OrderType, Side, TimeInForce
from resolvers.trading.matching import Incoming, OrderBook, match


def make_orders(n: int, seed: int, crossing: bool) -> list[Incoming]:
    rng = random.Random(seed)
    prices = [Decimal(p) / 100 for p in range(900, 1101)]
    tifs = [TimeInForce.GTC] * 8 + [TimeInForce.IOC, TimeInForce.FOK]
    out = []
    for i in range(n):
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        if crossing:
            price = rng.choice(prices)
        else:  # bids below 10, asks above: nothing crosses
            price = rng.choice(prices[:100]) if side is Side.BUY else rng.choice(prices[101:])
        out.append(
            Incoming(
                i,
                rng.randrange(1000),
                side,
                OrderType.LIMIT,
                rng.choice(tifs) if crossing else TimeInForce.GTC,
                price,
                Decimal(rng.randint(1, 50)),
            )
        )
    return out


def run(orders: list[Incoming], cancel_every: int = 0) -> tuple[float, int]:
    book = OrderBook()
    fills = 0
    rng = random.Random(1)
    start = time.perf_counter()
    for i, o in enumerate(orders):
        fills += len(book.submit(o).fills)
        if cancel_every and i % cancel_every == 0 and book.index:
            book.cancel(next(iter(book.index)) if rng.random() < 0.5 else o.id)
    return len(orders) / (time.perf_counter() - start), fills


def overhead(orders: list[Incoming]) -> float:
    start = time.perf_counter()
    for o in orders:
        match(o, ())
    return len(orders) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200_000)
    args = parser.parse_args()
    resting = make_orders(args.orders, 1, crossing=False)
    mixed = make_orders(args.orders, 2, crossing=True)
    base = overhead(mixed)
    r_rate, _ = run(resting)
    m_rate, fills = run(mixed, cancel_every=20)
    print(f"{'flow':<44} {'orders/s':>12} {'x baseline':>10}")
    print(f"{'baseline: match() on an empty book':<44} {base:>12,.0f} {1:>10.2f}")
    print(f"{'resting (non-crossing limits)':<44} {r_rate:>12,.0f} {r_rate / base:>10.2f}")
    print(f"{'mixed (crossing, IOC/FOK, cancels)':<44} {m_rate:>12,.0f} {m_rate / base:>10.2f}")
    print(f"\n{args.orders:,} orders per flow; mixed produced {fills:,} fills")


if __name__ == "__main__":
    main()
