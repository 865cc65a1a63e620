"""Benchmark (issue 5a): `placeOrder` over HTTP on one uvicorn worker with wrk, next to the plain Starlette +
asyncpg endpoint (bench/plain_app.py) in the same run.

    .venv/bin/python -m bench.trading_place_order [--duration 10] [--connections 50]

The wrk script alternates a seller's SELL and a buyer's BUY at one price, so every other request crosses: half
the requests rest an order, half trade against it (settlement in the ledger, a transfer instruction, market data
published to Redis). Each request: JWT check, compliance gate, market lock, matching, audit row, commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import tempfile
from decimal import Decimal

from bench.harness import REDIS_URL, WrkResult, _ms, print_table, scratch_database, uvicorn_server, wrk_post

PLACE = (
    "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id status filledQuantity } errors { code } } }"
)


async def _setup(database_url: str) -> tuple[str, list[tuple[str, str]], str]:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from tests.trading.factories import make_market, make_trader, make_user

    engine = create_async_engine(database_url, pool_size=2)
    sf = async_sessionmaker(engine, expire_on_commit=False)
    m = await make_market(sf, tick="0.01", lot="1", maker_bps=10, taker_bps=20)
    seller = await make_trader(sf, m, tokens=Decimal("1000000000"))
    buyer = await make_trader(sf, m, cash=Decimal("1000000000000"))
    plain_user = await make_user(sf)
    await engine.dispose()
    return str(m.market_id), [(str(seller.user_id), "SELL"), (str(buyer.user_id), "BUY")], str(plain_user)


def wrk_alternating(
    name: str, url: str, bodies: list[str], tokens: list[str], *, connections: int, duration_s: int
) -> WrkResult:
    reqs = ",\n".join(
        f'  wrk.format("POST", nil, {{["Content-Type"]="application/json", ["Authorization"]="Bearer {t}"}}, '
        f"[==[{b}]==])"
        for b, t in zip(bodies, tokens)
    )
    script = (
        f"local reqs = {{\n{reqs}\n}}\nlocal i = 0\n"
        "request = function()\n  i = i + 1\n  return reqs[(i % #reqs) + 1]\nend\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("NON2XX %d\\n", summary.errors.status))\nend\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--timeout", "30s", "--latency", "-s", f.name, url],
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
        check=True,
    ).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = int(re.search(r"NON2XX (\d+)", out).group(1))  # type: ignore[union-attr]
    return WrkResult(name, rps, p50, p99, non2xx)


async def _summary(database_url: str, market_id: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    conn = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM orders WHERE market_id = $1 GROUP BY status ORDER BY status",
            __import__("uuid").UUID(market_id),
        )
        trades = await conn.fetchval(
            "SELECT count(*) FROM trades WHERE market_id = $1", __import__("uuid").UUID(market_id)
        )
    finally:
        await conn.close()
    return ", ".join(f"{r['status']}={r['n']}" for r in rows) + f"; trades={trades}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()

    from core.jwt_keys import KeyRing, generate_private_key_pem

    pem = generate_private_key_pem()
    keyring = KeyRing(pem, "bench", ttl_s=3600)
    with scratch_database() as db_url, tempfile.TemporaryDirectory() as data_dir:
        market_id, traders, plain_user = asyncio.run(_setup(db_url))
        env = {
            "DATABASE_URL": db_url,
            "REDIS_URL": REDIS_URL,
            "RWA_ENV": "test",
            "RWA_DATA_DIR": data_dir,
            "JWT_PRIVATE_KEY": pem,
            "JWT_KEY_ID": "bench",
            "KYC_ENCRYPTION_KEY": os.urandom(32).hex(),
            "RWA_REDIS_PREFIX": "rwa-bench-trading:",
            "BENCH_USER_ID": plain_user,
        }
        tokens = [keyring.issue(__import__("uuid").UUID(uid), ["INVESTOR"])[0] for uid, _ in traders]
        bodies = [
            json.dumps(
                {
                    "query": PLACE,
                    "variables": {
                        "i": {"marketId": market_id, "side": side, "type": "LIMIT", "quantity": "1", "price": "10.00"}
                    },
                }
            )
            for _, side in traders
        ]
        with uvicorn_server("bench.plain_app:create_app", env) as plain:
            headers = {"Content-Type": "application/json"}
            wrk_post("warmup", plain.url + "/me", "{}", headers, duration_s=2, connections=args.connections)
            baseline = wrk_post(
                "plain starlette+asyncpg /me",
                plain.url + "/me",
                "{}",
                headers,
                duration_s=args.duration,
                connections=args.connections,
            )
            baseline.peak_rss_mb = plain.peak_rss_mb()
        with uvicorn_server("server.app:create_app_from_env", env) as api:
            wrk_alternating("warmup", api.url + "/graphql", bodies, tokens, connections=args.connections, duration_s=2)
            place = wrk_alternating(
                "graphql placeOrder (sell/buy cross)",
                api.url + "/graphql",
                bodies,
                tokens,
                connections=args.connections,
                duration_s=args.duration,
            )
            place.peak_rss_mb = api.peak_rss_mb()
        print_table([baseline, place], baseline)
        print(f"\nbook after the run: {asyncio.run(_summary(db_url, market_id))}")


if __name__ == "__main__":
    main()
