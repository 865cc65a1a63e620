"""In-process cost of `place_order`: sequential alternating SELL/BUY at one price against a scratch database,
reporting CPU (this process's and the Postgres backends') and wall per order and SQL statements per order, and the
raw statements' time from sent to answered (the time under the market lock); `--profile` prints cProfile CPU-time
tables.
`--http` goes through the whole ASGI app instead (JWT, GraphQL, session, publish to Redis), without sockets.
`--concurrent K` places K at a time, each in a unit of work as the mutation does, so they go through the market's
sequencer (resolvers/trading/sequencer.py) and are group-committed in batches of up to K.

    .venv/bin/python -m bench.trading_place_order_profile [--orders 400] [--profile] [--http] [--concurrent K]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import event

from bench.harness import REDIS_URL, scratch_database
from bench.trading_place_order import backend_cpu


async def _http_client(db_url: str, market_id: uuid.UUID, users: list[uuid.UUID]):  # type: ignore[no-untyped-def]
    """A `one(i)` that posts placeOrder through the app (lifespan entered for the rest of the run)."""
    import json
    import os
    import tempfile

    import httpx

    from core.jwt_keys import KeyRing, generate_private_key_pem

    pem = generate_private_key_pem()
    os.environ.update(
        {
            "DATABASE_URL": db_url,
            "REDIS_URL": REDIS_URL,
            "RWA_ENV": "test",
            "RWA_DATA_DIR": tempfile.mkdtemp(),
            "JWT_PRIVATE_KEY": pem,
            "JWT_KEY_ID": "bench",
            "KYC_ENCRYPTION_KEY": os.urandom(32).hex(),
            "RWA_REDIS_PREFIX": "rwa-bench-trading:",
            "LOG_LEVEL": "WARNING",
        }
    )
    from server.app import create_app_from_env

    app = create_app_from_env()
    # left open for the run, and referenced: a lifespan the collector finalizes runs its shutdown (the revocation
    # mirror, the read pool and Redis closed under the bench), as rwa serve's never does
    app.state.bench_lifespan = app.router.lifespan_context(app)
    await app.state.bench_lifespan.__aenter__()
    keyring = KeyRing(pem, "bench", ttl_s=3600)
    query = (
        "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) "
        "{ order { id status filledQuantity } errors { code } } }"
    )
    posts = [
        (
            json.dumps(
                {
                    "query": query,
                    "variables": {
                        "i": {
                            "marketId": str(market_id),
                            "side": side,
                            "type": "LIMIT",
                            "quantity": "1",
                            "price": "10.00",
                        }
                    },
                }
            ),
            {"Content-Type": "application/json", "Authorization": f"Bearer {keyring.issue(uid, ['INVESTOR'])[0]}"},
        )
        for uid, side in zip(users, ["SELL", "BUY"])
    ]
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")

    async def one(i: int) -> None:
        body, headers = posts[i % 2]
        r = await client.post("/graphql", content=body, headers=headers)
        assert r.status_code == 200 and "errors" not in r.json(), r.text
        assert r.json()["data"]["placeOrder"]["errors"] == [], r.text

    return one


async def _run(db_url: str, n: int, profile: bool, http: bool = False, concurrent: int = 1) -> None:
    from core.db import create_engine, create_session_factory
    from models.trading import OrderType, Side
    from resolvers.trading.orders import OrderRequest, place_order
    from resolvers.unit_of_work import UnitOfWork
    from tests.trading.factories import make_market, make_trader

    engine = create_engine(db_url, pool_size=max(2, concurrent // 4))
    sf = create_session_factory(engine)
    m = await make_market(sf, tick="0.01", lot="1", maker_bps=10, taker_bps=20)
    seller = await make_trader(sf, m, tokens=Decimal("1000000000"))
    buyer = await make_trader(sf, m, cash=Decimal("1000000000000"))
    statements = 0

    def count(*_a: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    await engine.dispose()  # new connections get the raw-statement counter below

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: object, _rec: object) -> None:  # statements run on raw asyncpg (resolvers/raw_sql)
        dbapi_conn.driver_connection.add_query_logger(timed)  # type: ignore[attr-defined]

    by_statement: dict[str, list[float]] = {}  # the statement's first words -> [count, seconds]

    def timed(record: Any) -> None:
        count()
        text = " ".join(record.query.split())
        key = text if len(text) <= 110 else f"{text[:60]} ... {text[-45:]}"
        entry = by_statement.setdefault(key, [0, 0.0])
        entry[0] += 1
        entry[1] += record.elapsed

    reqs = [
        (seller.user_id, OrderRequest(m.market_id, Side.SELL, OrderType.LIMIT, Decimal(1), Decimal("10.00"))),
        (buyer.user_id, OrderRequest(m.market_id, Side.BUY, OrderType.LIMIT, Decimal(1), Decimal("10.00"))),
    ]

    async def one(i: int) -> None:
        uid, req = reqs[i % 2]
        async with sf() as s:
            if concurrent > 1:
                await UnitOfWork(s).run(lambda: place_order(s, uid, req, request_id=str(uuid.uuid4())))
            else:
                await place_order(s, uid, req, request_id=str(uuid.uuid4()))

    if http:
        one = await _http_client(db_url, m.market_id, [seller.user_id, buyer.user_id])

    async def wave(i: int) -> None:
        await asyncio.gather(*[one(j) for j in range(i, i + concurrent)])

    for i in range(0, 40, concurrent):  # warm caches (compiled SQL, pool)
        await wave(i)
    statements = 0
    by_statement.clear()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU only: waiting on Postgres is not the question
        profiler.enable()
    db0 = await backend_cpu(db_url)
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(0, n, concurrent):
        await wave(i)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    db1 = await backend_cpu(db_url)
    db_cpu = sum(t - db0.get(pid, 0.0) for pid, t in db1.items())
    if profiler is not None:
        import pstats

        profiler.disable()
        stats = pstats.Stats(profiler)
        if os.environ.get("PROFILE_OUT"):  # the raw stats too, for pstats' callers/callees
            stats.dump_stats(os.environ["PROFILE_OUT"])
        stats.sort_stats("tottime").print_stats(45)
        stats.sort_stats("cumulative").print_stats(70)
    print(
        f"{n} orders: CPU {cpu / n * 1000:.2f} ms/order (Postgres backends {db_cpu / n * 1000:.2f}), "
        f"wall {wall / n * 1000:.2f} ms/order, "
        + ("(statements: the app has its own engine)" if http else f"{statements / n:.1f} SQL statements/order")
    )
    if not http:
        print("raw statements (asyncpg, from sent to answered; under load it includes waiting for a core):")
        for key, (n_, seconds) in sorted(by_statement.items(), key=lambda kv: -kv[1][1])[:10]:
            print(f"  {n_ / n:5.2f}/order {seconds / n_ * 1000:6.2f} ms each {seconds / n * 1000:6.2f} ms/order  {key}")
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--concurrent", type=int, default=1)
    args = parser.parse_args()
    with scratch_database() as db_url:
        asyncio.run(_run(db_url, args.orders, args.profile, args.http, args.concurrent))


if __name__ == "__main__":
    main()
