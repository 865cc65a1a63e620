"""Benchmark (issue 16 item 4): crossing `placeOrder` over HTTP with wrk, on one uvicorn worker and on one market
from two API processes together, next to the plain Starlette + asyncpg endpoint (bench/plain_app.py) in the same
run; with the server processes' CPU time per request (load-independent, unlike req/s on a shared machine).

    .venv/bin/python -m bench.trading_place_order [--duration 10] [--connections 50] [--mode all|one|two]

The wrk script alternates a seller's SELL and a buyer's BUY at one price, so every other request crosses: half
the requests rest an order, half trade against it (settlement in the ledger, a transfer instruction, market data
published to Redis). Each request: JWT check (and its revocation lookup in Redis), GraphQL parse/validate/execute,
compliance gate, market lock, matching, audit row, commit, publish. Placements of one market in one process are
group-committed by resolvers/trading/sequencer.py. Two-process mode: two single-worker uvicorn processes on the same
database and market, one wrk per process (half the connections each) running at the same time; req/s is the sum,
p50/p99 the worse of the two.

Fairness. The plain endpoint reads one row by primary key with asyncpg and returns JSON: no auth, no GraphQL, no
transaction, no writes, no Redis; placeOrder does all of those, so the ratio is the price of the stack and of the
work, not of the framework alone. Both get the same wrk settings, a 2 s warm-up run on the same server first (asyncpg
prepared-statement caches, SQLAlchemy compiled caches, the ledger's account cache, GraphQL document caches are
warm; the book is not reset after the warm-up), and the timing boundary is wrk's: from the request written to
the response read, on keep-alive connections, client and servers and Postgres and Redis on the same 2 cores (wrk's
own CPU is not in the server CPU figure; Redis' CPU is in none). CPU per request is the server processes'
utime+stime (/proc) over the measured run divided by wrk's request count; the Postgres figure is the same for the
backends connected to the bench's database (the servers' pools; one opened during the run counts from 0). No agent runs, so every
trade's token transfer stays PENDING; the gate reads the seller's unsettled total from `settlement_outgoing` (one row,
migration 0023) instead of summing the instructions, which grew with each trade (~2.5 ms per sell at 500 pending
before). Each phase still gets a market and traders of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path

from bench.harness import REDIS_URL, Server, WrkResult, _ms, print_table, scratch_database, uvicorn_server, wrk_post

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


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def backend_cpu(database_url: str) -> dict[int, float]:
    """pid -> utime+stime (s) of every Postgres backend connected to the bench's database (same machine)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", url.database
        )
    finally:
        await conn.close()
    out: dict[int, float] = {}
    for r in rows:
        try:
            out[r["pid"]] = _cpu_s(r["pid"])
        except OSError:  # ended meanwhile
            pass
    return out


def _backend_cpu(database_url: str) -> dict[int, float]:
    return asyncio.run(backend_cpu(database_url))


def _wrk_cmd(script: str, url: str, connections: int, duration_s: int) -> list[str]:
    return ["wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--timeout", "30s", "--latency", "-s", script, url]


def _parse(name: str, out: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = int(re.search(r"NON2XX (\d+)", out).group(1))  # type: ignore[union-attr]
    result = WrkResult(name, rps, p50, p99, non2xx)
    result.requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[attr-defined,union-attr]
    return result


def _script(bodies: list[str], tokens: list[str]) -> str:
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
    return f.name


def wrk_alternating(
    name: str,
    urls: list[str],
    bodies: list[str],
    tokens: list[str],
    *,
    connections: int,
    duration_s: int,
    pids: list[int] | None = None,
    database_url: str | None = None,
) -> WrkResult:
    """wrk on every url at once (connections split between them); req/s summed, latencies the worst; with `pids`,
    the servers' CPU ms per request in `cpu_ms`; with `database_url`, the Postgres backends' in `db_cpu_ms`
    (the backends connected at the end, from their CPU at the start, 0 for those opened meanwhile)."""
    script = _script(bodies, tokens)
    db0 = _backend_cpu(database_url) if database_url else {}
    cpu0 = sum(_cpu_s(p) for p in pids or [])
    runs = [
        subprocess.Popen(
            _wrk_cmd(script, url + "/graphql", max(1, connections // len(urls)), duration_s),
            stdout=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    outs = [r.communicate(timeout=duration_s + 60)[0] for r in runs]
    cpu = sum(_cpu_s(p) for p in pids or []) - cpu0
    db1 = _backend_cpu(database_url) if database_url else {}
    os.unlink(script)
    parts = [_parse(name, out) for out in outs]
    result = WrkResult(
        name,
        sum(p.requests_per_s for p in parts),
        max(p.p50_ms for p in parts),
        max(p.p99_ms for p in parts),
        sum(p.non_2xx for p in parts),
    )
    requests = sum(p.requests for p in parts)  # type: ignore[attr-defined]
    result.cpu_ms = cpu * 1000 / requests if pids and requests else None  # type: ignore[attr-defined]
    db_cpu = sum(t - db0.get(pid, 0.0) for pid, t in db1.items())
    result.db_cpu_ms = db_cpu * 1000 / requests if database_url and requests else None  # type: ignore[attr-defined]
    return result


async def _summary(database_url: str, market_id: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    conn = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM orders WHERE market_id = $1 GROUP BY status ORDER BY status",
            uuid.UUID(market_id),
        )
        trades = await conn.fetchval("SELECT count(*) FROM trades WHERE market_id = $1", uuid.UUID(market_id))
    finally:
        await conn.close()
    return ", ".join(f"{r['status']}={r['n']}" for r in rows) + f"; trades={trades}"


def _measure(
    name: str,
    servers: list[Server],
    bodies: list[str],
    tokens: list[str],
    args: argparse.Namespace,
    database_url: str,
) -> WrkResult:
    urls = [s.url for s in servers]
    wrk_alternating("warmup", urls, bodies, tokens, connections=args.connections, duration_s=2)
    result = wrk_alternating(
        name,
        urls,
        bodies,
        tokens,
        connections=args.connections,
        duration_s=args.duration,
        pids=[s.proc.pid for s in servers],
        database_url=database_url,
    )
    result.peak_rss_mb = sum(s.peak_rss_mb() for s in servers)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--mode", choices=["all", "one", "two"], default="all")
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

        def workload(market_id: str, traders: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
            tokens = [keyring.issue(uuid.UUID(uid), ["INVESTOR"])[0] for uid, _ in traders]
            bodies = [
                json.dumps(
                    {
                        "query": PLACE,
                        "variables": {
                            "i": {
                                "marketId": market_id,
                                "side": side,
                                "type": "LIMIT",
                                "quantity": "1",
                                "price": "10.00",
                            }
                        },
                    }
                )
                for _, side in traders
            ]
            return bodies, tokens

        markets: list[str] = []
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
        results = [baseline]
        if args.mode in ("all", "one"):
            markets.append(market_id)
            bodies, tokens = workload(market_id, traders)
            with uvicorn_server("server.app:create_app_from_env", env) as api:
                results.append(_measure("placeOrder, 1 process", [api], bodies, tokens, args, db_url))
        if args.mode in ("all", "two"):
            # a market and traders of its own: a phase does not inherit the previous phase's book and backlog
            market_id, traders, _ = asyncio.run(_setup(db_url)) if markets else (market_id, traders, None)
            markets.append(market_id)
            bodies, tokens = workload(market_id, traders)
            with (
                uvicorn_server("server.app:create_app_from_env", env) as a,
                uvicorn_server("server.app:create_app_from_env", env) as b,
            ):
                results.append(_measure("placeOrder, 2 processes", [a, b], bodies, tokens, args, db_url))
        print_table(results, baseline)
        for r in results[1:]:
            cpu, db_cpu = r.cpu_ms, r.db_cpu_ms  # type: ignore[attr-defined]
            print(
                f"{r.name}: server CPU "
                + (f"{cpu:.2f} ms/request" if cpu is not None else "- (no request completed)")
                + (f", Postgres backends' CPU {db_cpu:.2f} ms/request" if db_cpu is not None else "")
            )
        for market in markets:
            print(f"book after the run: {asyncio.run(_summary(db_url, market))}")


if __name__ == "__main__":
    main()
