"""Reports on a large seeded database: the cap table at past blocks (FORWARD vs REVERSE vs the automatic choice, and
at a date; then with checkpoints written: CHECKPOINT vs automatic) and the dashboard KPIs (computing the snapshot vs one poll), with EXPLAIN ANALYZE of each statement.

    .venv/bin/python -m bench.reports [--transfers 1000000] [--holders 10000] [--trades 1000000] [--assets 100000]
                                      [--payments 200000] [--reseed]

Seeds (or reuses) the separate database `rwa_bench_reports` by COPY: one security token with `--transfers` indexed
transfers over `--transfers / 5` blocks (one stored block each, 12 s apart) between `--holders` holders (each minted
at the start), the holdings they sum to, the indexer cursor; `--assets` assets in every status, 20 markets with
`--trades` trades over 60 days, `--payments` payments over 60 days, the FEES ledger accounts. Prints medians of 3
runs (ms) and the plans' top lines, then one `platformKpis` poll through the app vs `{ __typename }`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bench.harness import REDIS_URL
from bench.seed_assets import _dsn, create_database, database_url

BENCH_DB = "rwa_bench_reports"
TOKEN = "0x5e5E5e5e5E5e5E5E5e5E5E5e5e5E5E5E5e5E5E5e"  # EIP-55, as the indexer stores it
T0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 1, tzinfo=UTC)
STATUSES = [
    "DRAFT",
    "UNDER_REVIEW",
    "APPROVED",
    "REJECTED",
    "TOKENIZING",
    "ACTIVE",
    "SUSPENDED",
    "REDEEMING",
    "RETIRED",
]
PAY_STATES = ["AWAITING_FUNDS", "DETECTED", "CONFIRMED", "EXPIRED", "CANCELED", "OVERPAID"]


def _addr(i: int) -> str:
    from chains.inputs import checksum_address

    return checksum_address(f"0x{i + 0x1000:040x}")


async def seed(url: str, args: argparse.Namespace) -> None:
    rng = random.Random(7)
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute("SET session_replication_role = replica")
        started = time.perf_counter()
        issuer = uuid.uuid4()
        await conn.execute(
            "INSERT INTO users (id, email, password_hash, roles, status, failed_logins) VALUES "
            "($1, 'issuer@bench', 'x', '{ISSUER}', 'ACTIVE', 0)",
            issuer,
        )
        asset = uuid.uuid4()
        await conn.execute(
            "INSERT INTO assets (id, issuer_id, name, type, status, jurisdiction, currency, attributes, "
            "description) VALUES ($1, $2, 'Bench', 'BOND', 'ACTIVE', 'DE', 'EUR', '{}', '')",
            asset,
            issuer,
        )
        await conn.execute(
            "INSERT INTO tokens (id, chain_id, address, kind, asset_id, name, symbol, decimals, "
            "total_supply, paused, start_block) VALUES ($1, 1, $2, 'SECURITY', $3, 'Bench', 'BNCH', 18, "
            "0, false, 1)",
            uuid.uuid4(),
            TOKEN,
            asset,
        )
        holders = [_addr(i) for i in range(args.holders)]
        per_block = 5
        balances = dict.fromkeys(holders, 0)
        zero = "0x" + "0" * 40
        mint = 10**24
        columns = [
            "chain_id",
            "block_hash",
            "log_index",
            "block_number",
            "block_time",
            "tx_hash",
            "token_address",
            "from_address",
            "to_address",
            "value",
        ]

        def transfer(n: int, b: int, src: str, dst: str, value: int) -> tuple[Any, ...]:
            balances[src] = balances.get(src, 0) - value
            balances[dst] = balances.get(dst, 0) + value
            return (
                1,
                f"0x{b:064x}",
                n % per_block,
                b,
                T0 + timedelta(seconds=12 * b),
                f"0x{b:064x}",
                TOKEN,
                src,
                dst,
                value,
            )

        # mints first, then random transfers; COPY in chunks (bounded memory)
        chunk: list[tuple[Any, ...]] = []
        last = 0
        for n in range(args.transfers):
            if n < args.holders:
                row = transfer(n, 1 + n // per_block, zero, holders[n], mint)
            else:
                row = transfer(
                    n, 1 + n // per_block, rng.choice(holders), rng.choice(holders), rng.randrange(1, 10**18)
                )
            last = row[3]
            chunk.append(row)
            if len(chunk) == 100_000:
                await conn.copy_records_to_table("token_transfers", records=chunk, columns=columns)
                chunk = []
        if chunk:
            await conn.copy_records_to_table("token_transfers", records=chunk, columns=columns)
        balances.pop(zero, None)
        await conn.copy_records_to_table(
            "blocks",
            columns=["chain_id", "number", "hash", "parent_hash", "timestamp"],
            records=[
                (1, b, f"0x{b:064x}", f"0x{b - 1:064x}", T0 + timedelta(seconds=12 * b)) for b in range(1, last + 1)
            ],
        )
        await conn.copy_records_to_table(
            "holdings",
            columns=["chain_id", "token_address", "holder", "balance", "frozen_amount", "frozen", "updated_block"],
            records=[(1, TOKEN, h, v, 0, False, last) for h, v in balances.items()],
        )
        await conn.execute(
            "INSERT INTO indexer_cursors (chain_id, indexed_block, finalized_block, head_block) VALUES (1, $1, $1, $1)",
            last,
        )
        await conn.execute("INSERT INTO fetched_intervals VALUES (1, $1, 1, $2)", TOKEN, last)
        print(
            f"seeded {args.transfers:,} transfers over {last:,} blocks, {args.holders:,} holders "
            f"in {time.perf_counter() - started:.1f} s"
        )

        started = time.perf_counter()
        await conn.copy_records_to_table(
            "assets",
            columns=[
                "id",
                "issuer_id",
                "name",
                "type",
                "status",
                "jurisdiction",
                "currency",
                "attributes",
                "latest_valuation_amount",
                "latest_valuation_currency",
                "description",
            ],
            records=[
                (
                    uuid.uuid4(),
                    issuer,
                    f"A{i}",
                    "BOND",
                    rng.choice(STATUSES),
                    "DE",
                    "EUR",
                    "{}",
                    Decimal(rng.randrange(10**4, 10**8)),
                    rng.choice(["EUR", "USD"]),
                    "",
                )
                for i in range(args.assets)
            ],
        )
        markets = []
        for i in range(20):
            tok, m = uuid.uuid4(), uuid.uuid4()
            await conn.execute(
                "INSERT INTO tokens (id, chain_id, address, kind, asset_id, name, symbol, decimals, "
                "total_supply, paused, start_block) VALUES ($1, 137, $2, 'SECURITY', $3, 'M', 'M', 6, 0, "
                "false, 1)",
                tok,
                _addr(10**6 + i),
                asset,
            )
            await conn.execute(
                "INSERT INTO markets (id, symbol, base_token_id, chain_id, token_address, base_decimals, "
                "quote_currency, tick_size, lot_size, min_notional, maker_fee_bps, taker_fee_bps, status,"
                " book_sequence) VALUES ($1, $2, $3, 137, $4, 6, $5, 0.01, 1, 0, 10, 20, 'OPEN', 0)",
                m,
                f"M{i}/Q",
                tok,
                _addr(10**6 + i),
                "USDC" if i % 2 else "EURC",
            )
            markets.append(m)
        span = 60 * 86400
        trade_columns = [
            "id",
            "seq",
            "market_id",
            "maker_order_id",
            "taker_order_id",
            "buyer_id",
            "seller_id",
            "taker_side",
            "price",
            "quantity",
            "maker_fee",
            "taker_fee",
            "settlement",
            "created_at",
        ]
        trades = []
        for n in range(args.trades):
            price, qty = Decimal(rng.randrange(100, 10000)) / 100, Decimal(rng.randrange(1, 100))
            notional = price * qty
            trades.append(
                (
                    uuid.uuid4(),
                    n + 1,
                    rng.choice(markets),
                    uuid.uuid4(),
                    uuid.uuid4(),
                    issuer,
                    issuer,
                    "BUY",
                    price,
                    qty,
                    notional / 1000,
                    notional / 500,
                    "FAILED" if n % 97 == 0 else "SETTLED",
                    NOW - timedelta(seconds=rng.randrange(span)),
                )
            )
            if len(trades) == 100_000:
                await conn.copy_records_to_table("trades", records=trades, columns=trade_columns)
                trades = []
        if trades:
            await conn.copy_records_to_table("trades", records=trades, columns=trade_columns)
        await conn.copy_records_to_table(
            "payments",
            columns=[
                "id",
                "user_id",
                "method",
                "state",
                "amount",
                "currency",
                "idempotency_key",
                "expires_at",
                "reference_code",
                "created_at",
                "received_units",
                "final_units",
                "received_amount",
                "credited_amount",
                "refundable_amount",
                "refunded_amount",
            ],
            records=[
                (
                    uuid.uuid4(),
                    issuer,
                    "BANK_TRANSFER",
                    rng.choice(PAY_STATES),
                    Decimal(rng.randrange(100, 10**6)),
                    "EUR",
                    f"k{n}",
                    NOW,
                    f"r{n}",
                    NOW - timedelta(seconds=rng.randrange(span)),
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                )
                for n in range(args.payments)
            ],
        )
        for cur in ("USDC", "EURC"):
            await conn.execute(
                "INSERT INTO ledger_accounts (id, owner_id, kind, currency, balance) VALUES "
                "($1, NULL, 'FEES', $2, 12345.67)",
                uuid.uuid4(),
                cur,
            )
        await conn.execute("ANALYZE")
        await conn.execute("VACUUM (ANALYZE) token_transfers")  # index-only scans need the visibility map
        print(
            f"seeded {args.assets:,} assets, {args.trades:,} trades, {args.payments:,} payments "
            f"in {time.perf_counter() - started:.1f} s"
        )
    finally:
        await conn.close()


async def timed(fn: Any, runs: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = await fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


async def explain(conn: asyncpg.Connection, sql: str, *params: Any, lines: int = 4) -> str:
    plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + sql, *params)
    text = [r[0] for r in plan]
    keep = text[:lines] + [t for t in text if t.startswith(("Execution Time", "Planning Time"))]
    return "\n      ".join(keep)


async def bench_cap_table(url: str) -> None:
    from resolvers.reports import cap_table as caps
    from resolvers.viewer import Viewer

    engine = create_async_engine(url)
    viewer = Viewer(user_id=uuid.uuid4(), roles=frozenset({"ADMIN"}))
    conn = await asyncpg.connect(_dsn(url))
    try:
        last = await conn.fetchval("SELECT indexed_block FROM indexer_cursors WHERE chain_id = 1")
        holders = await conn.fetchval("SELECT count(*) FROM holdings")
        transfers = await conn.fetchval("SELECT count(*) FROM token_transfers")
        print(f"\ncap table: {transfers:,} transfers, {holders:,} holders, blocks 1..{last:,} (ms, median of 3)")
        print(f"  {'block':>10} {'FORWARD':>9} {'REVERSE':>9} {'auto':>9}  chose     rows")
        async with AsyncSession(engine) as session:
            for frac in (0.01, 0.5, 0.9, 0.99, 1.0):
                block = max(int(last * frac), 1)
                row = []
                for strategy in (caps.Strategy.FORWARD, caps.Strategy.REVERSE, None):
                    ms, table = await timed(
                        lambda s=strategy, b=block: caps.cap_table(  # type: ignore[misc]
                            session, viewer, chain_id=1, token=TOKEN, at_block=b, strategy=s, limit=1000
                        )
                    )
                    row.append(ms)
                print(
                    f"  {block:>10,} {row[0]:>9.1f} {row[1]:>9.1f} {row[2]:>9.1f}  {table.strategy.value:<8} "
                    f"{table.holder_count:>6,}"
                )
            when = T0 + timedelta(seconds=12 * int(last * 0.9))
            ms, table = await timed(
                lambda: caps.cap_table(session, viewer, chain_id=1, token=TOKEN, at_time=when, limit=1000)
            )
            print(f"  at a date (block {table.at_block:,}): {ms:.1f} ms, {table.strategy.value}")
            from resolvers.reports.checkpoints import CHECKPOINT_EVERY, write_checkpoints

            await (await session.connection()).exec_driver_sql(
                "TRUNCATE cap_table_checkpoints, cap_table_checkpoint_balances"
            )
            await session.commit()
            started = time.perf_counter()
            written = await write_checkpoints(session)
            took = (time.perf_counter() - started) * 1000
            print(
                f"  writing {len(written)} checkpoints (every {CHECKPOINT_EVERY:,} transfers): {took:,.0f} ms "
                f"({took / max(len(written), 1):,.0f} ms each)"
            )
            print(f"  {'block':>10} {'CHECKPOINT':>10} {'auto':>9}  chose")
            for frac in (0.01, 0.5, 0.9, 0.99):
                block = max(int(last * frac), 1)
                ms_ck, _ = await timed(
                    lambda b=block: caps.cap_table(  # type: ignore[misc]
                        session,
                        viewer,
                        chain_id=1,
                        token=TOKEN,
                        at_block=b,
                        strategy=caps.Strategy.CHECKPOINT,
                        limit=1000,
                    )
                )
                ms_auto, table = await timed(
                    lambda b=block: caps.cap_table(  # type: ignore[misc]
                        session, viewer, chain_id=1, token=TOKEN, at_block=b, limit=1000
                    )
                )
                print(f"  {block:>10,} {ms_ck:>10.1f} {ms_auto:>9.1f}  {table.strategy.value}")
            info = await caps.load_token(session, 1, TOKEN)
            ms, _ = await timed(lambda: caps.choose_strategy(session, info, int(last * 0.5), last))
            print(f"  choosing the strategy alone (bounded counts, limit {caps.PROBE_LIMIT:,}): {ms:.1f} ms")
        mid = int(last * 0.5)
        print("  EXPLAIN FORWARD at 50%:\n      " + await explain(conn, caps._FORWARD, 1, TOKEN, mid))
        print("  EXPLAIN REVERSE at 99%:\n      " + await explain(conn, caps._REVERSE, 1, TOKEN, int(last * 0.99)))
        print(
            "  EXPLAIN date -> block:\n      "
            + await explain(conn, caps._BLOCK_AT_TIME, 1, T0 + timedelta(seconds=12 * mid), lines=2)
        )
    finally:
        await conn.close()
        await engine.dispose()


async def bench_kpis(url: str) -> None:
    from core.redis import Keys, create_redis
    from resolvers.reports import kpis
    from resolvers.viewer import Viewer

    engine = create_async_engine(url)
    redis = create_redis(REDIS_URL)
    keys = Keys(f"rwa-bench-reports:{uuid.uuid4().hex[:6]}:")
    viewer = Viewer(user_id=uuid.uuid4(), roles=frozenset({"ADMIN"}))
    conn = await asyncpg.connect(_dsn(url))
    try:
        async with AsyncSession(engine) as session:
            ms, snap = await timed(lambda: kpis.refresh_kpis(session, redis, keys, NOW))
            print(f"\nKPIs: computing + storing the snapshot (the job, every {kpis.REFRESH_S:.0f} s): {ms:.1f} ms")
            polls = 2000
            started = time.perf_counter()
            for _ in range(polls):
                await kpis.platform_kpis(session, redis, keys, viewer, NOW + timedelta(seconds=1))
            per_poll = (time.perf_counter() - started) / polls * 1e6
            print(
                f"  one poll (Redis GET + decode, {len(snap.to_json()):,} bytes): {per_poll:.0f} µs "
                f"({ms * 1000 / per_poll:,.0f}x cheaper than computing)"
            )
        (_, d24), (_, d7), (_, d30) = kpis.WINDOWS
        for name, sql, params in (
            ("assets by status", kpis._ASSETS, ()),
            ("tokenized value", kpis._TOKENIZED, (list(kpis.TOKENIZED_STATUSES),)),
            ("trading 24h/7d/30d", kpis._TRADING, (NOW, NOW - d24, NOW - d7, NOW - d30)),
            ("payments by state", kpis._PAYMENTS, (NOW - kpis.PAYMENTS_WINDOW, NOW)),
        ):
            print(f"  EXPLAIN {name}:\n      " + await explain(conn, sql, *params, lines=3))
    finally:
        await conn.close()
        await redis.delete(kpis.snapshot_key(keys))
        await redis.aclose()
        await engine.dispose()


async def bench_kpi_http(url: str, requests: int = 300) -> None:
    """`platformKpis` through the real app (in-process ASGI, an ADMIN's JWT) vs `{ __typename }` in the same run."""
    import httpx

    from core.jwt_keys import generate_private_key_pem
    from core.services import build_services
    from core.settings import Environment, Settings
    from server.app import create_app

    settings = Settings(
        RWA_ENV=Environment.TEST,
        DATABASE_URL=url,
        REDIS_URL=REDIS_URL,  # type: ignore[call-arg]
        RWA_REDIS_PREFIX=f"rwa-bench-reports:{uuid.uuid4().hex[:6]}:",
        JWT_PRIVATE_KEY=generate_private_key_pem(),
        KYC_ENCRYPTION_KEY=os.urandom(32).hex(),
        LOG_JSON=False,
    )
    services = build_services(settings)
    app = create_app(settings, services)
    token, _ = services.keyring.issue(uuid.uuid4(), ["ADMIN"])
    headers = {"Authorization": f"Bearer {token}"}
    kpi = {
        "query": "{ platformKpis { computedAt assetsByStatus { status count } tokenizedValue { currency amount } "
        "tradingVolume { window currency volume trades fees } feesEarned { currency amount } "
        "paymentsByState { state currency count amount } } }"
    }
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            first = await client.post("/graphql", json=kpi, headers=headers)  # computes and stores the snapshot
            assert "errors" not in first.json(), first.text
            results = {}
            for name, body in (("{ __typename }", {"query": "{ __typename }"}), ("platformKpis", kpi)):
                started = time.perf_counter()
                for _ in range(requests):
                    r = await client.post("/graphql", json=body, headers=headers)
                    assert r.status_code == 200
                results[name] = (time.perf_counter() - started) / requests * 1000
        print(
            f"  one poll over HTTP (in-process, {requests} requests): platformKpis {results['platformKpis']:.2f} ms "
            f"vs {{ __typename }} {results['{ __typename }']:.2f} ms"
        )
    finally:
        await services.redis.delete(f"{settings.redis_prefix}reports:kpis")
        await services.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=1_000_000)
    parser.add_argument("--holders", type=int, default=10_000)
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--payments", type=int, default=200_000)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--only-kpis", action="store_true", help="skip the cap tables")
    args = parser.parse_args()
    url = database_url(BENCH_DB)
    admin = await asyncpg.connect(_dsn(url.rsplit("/", 1)[0] + "/postgres"))
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", BENCH_DB)
    await admin.close()
    if args.reseed or not exists:
        url = await create_database(BENCH_DB)
        await seed(url, args)
    else:
        from core.migrate import upgrade

        await upgrade(url)  # a database seeded before the latest migrations
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    if not args.only_kpis:
        await bench_cap_table(url)
    await bench_kpis(url)
    await bench_kpi_http(url)


if __name__ == "__main__":
    asyncio.run(main())
