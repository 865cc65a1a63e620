"""In-process cost of `place_order` (no HTTP): sequential alternating SELL/BUY at one price against a scratch
database, reporting CPU and wall per order and SQL statements per order; `--profile` prints cProfile CPU-time tables.

    .venv/bin/python -m bench.trading_place_order_profile [--orders 400] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from decimal import Decimal

from sqlalchemy import event

from bench.harness import scratch_database


async def _run(db_url: str, n: int, profile: bool) -> None:
    from core.db import create_engine, create_session_factory
    from models.trading import OrderType, Side
    from resolvers.trading.orders import OrderRequest, place_order
    from tests.trading.factories import make_market, make_trader

    engine = create_engine(db_url, pool_size=2)
    sf = create_session_factory(engine)
    m = await make_market(sf, tick="0.01", lot="1", maker_bps=10, taker_bps=20)
    seller = await make_trader(sf, m, tokens=Decimal("1000000000"))
    buyer = await make_trader(sf, m, cash=Decimal("1000000000000"))
    statements = 0

    def count(*_a: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    reqs = [(seller.user_id, OrderRequest(m.market_id, Side.SELL, OrderType.LIMIT, Decimal(1), Decimal("10.00"))),
            (buyer.user_id, OrderRequest(m.market_id, Side.BUY, OrderType.LIMIT, Decimal(1), Decimal("10.00")))]

    async def one(i: int) -> None:
        uid, req = reqs[i % 2]
        async with sf() as s:
            await place_order(s, uid, req, request_id=str(uuid.uuid4()))

    for i in range(40):  # warm caches (compiled SQL, pool)
        await one(i)
    statements = 0
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU only: waiting on Postgres is not the question
        profiler.enable()
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(n):
        await one(i)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    if profiler is not None:
        import pstats

        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(45)
        stats.sort_stats("cumulative").print_stats(70)
    print(f"{n} orders: CPU {cpu / n * 1000:.2f} ms/order, wall {wall / n * 1000:.2f} ms/order, "
          f"{statements / n:.1f} SQL statements/order")
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with scratch_database() as db_url:
        asyncio.run(_run(db_url, args.orders, args.profile))


if __name__ == "__main__":
    main()
