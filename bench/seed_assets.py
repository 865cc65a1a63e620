"""Seed a separate database with 1,000,000 assets, one valuation each and a token for every tokenized asset,
through COPY (asyncpg copy_records_to_table). Secondary indexes are dropped during the load and rebuilt after
(faster than maintaining them row by row); FK triggers are off during COPY (the generator keeps references
consistent) and every FK is declared as in migrations.

    .venv/bin/python -m bench.seed_assets [--assets 1000000] [--db rwa_bench_assets]

Prints the seconds per phase; the database is left in place for bench/assets_list.py.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
from sqlalchemy.engine import make_url

from bench.harness import ADMIN_URL

BENCH_DB = "rwa_bench_assets"
ISSUERS = 1000
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
WEIGHTS = [8, 4, 4, 3, 1, 60, 5, 5, 10]
TOKENIZED = {"TOKENIZING", "ACTIVE", "SUSPENDED", "REDEEMING", "RETIRED"}
TYPES = ["REAL_ESTATE", "BOND", "FUND", "INVOICE", "COMMODITY", "OTHER"]
CHAINS = [1, 137, 56]
COUNTRIES = ["DE", "FR", "LU", "NL", "CH", "GB", "US", "SG", "AE", "IE"]
WORDS = [
    "Harbour",
    "Alpine",
    "Greenfield",
    "Northern",
    "Sterling",
    "Atlas",
    "Meridian",
    "Cedar",
    "Beacon",
    "Summit",
    "Riverside",
    "Granite",
    "Oak",
    "Pacific",
    "Aurora",
    "Crown",
    "Liberty",
    "Nova",
    "Vista",
    "Orion",
]
NOUNS = {
    "REAL_ESTATE": "Tower",
    "BOND": "Bond",
    "FUND": "Fund",
    "INVOICE": "Receivables",
    "COMMODITY": "Gold",
    "OTHER": "Holding",
}


def database_url(name: str = BENCH_DB) -> str:
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(name: str) -> str:
    from core.migrate import upgrade

    admin = await asyncpg.connect(_dsn(ADMIN_URL))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = database_url(name)
    await upgrade(url)
    return url


def _uuids(n: int, rng: random.Random) -> list[uuid.UUID]:
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n)]


async def _copy(url: str, table: str, columns: list[str], records: list[tuple]) -> None:  # type: ignore[type-arg]
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute("SET session_replication_role = replica")
        chunk = 200_000
        for start in range(0, len(records), chunk):
            await conn.copy_records_to_table(table, columns=columns, records=records[start : start + chunk])
    finally:
        await conn.close()


async def _build_indexes(url: str, defs: list[str], parallel: int = 2) -> None:
    """Largest first, `parallel` at a time (one connection each)."""
    queue = sorted(defs, key=lambda d: ("gin" not in d, "assets" not in d))

    async def worker() -> None:
        conn = await asyncpg.connect(_dsn(url))
        try:
            await conn.execute("SET maintenance_work_mem = '256MB'")
            while queue:
                await conn.execute(queue.pop(0))
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(parallel)))


async def seed(url: str, n_assets: int, seed_value: int = 7) -> dict[str, float]:
    rng = random.Random(seed_value)
    timings: dict[str, float] = {}
    conn = await asyncpg.connect(_dsn(url))
    try:
        started = time.perf_counter()
        index_defs = [
            r["indexdef"]
            for r in await conn.fetch(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY($1) "
                "AND indexname NOT LIKE 'pk_%'",
                ["assets", "valuations", "tokens"],
            )
        ]
        for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND "
            "tablename = ANY($1) AND indexname NOT LIKE 'pk_%'",
            ["assets", "valuations", "tokens"],
        ):
            await conn.execute(f'DROP INDEX "{r["indexname"]}"')
        await conn.execute("SET session_replication_role = replica")  # FK triggers off during the bulk load

        now = datetime(2026, 11, 1, tzinfo=UTC)
        issuers = _uuids(ISSUERS, rng)
        await conn.copy_records_to_table(
            "users",
            columns=["id", "email", "password_hash", "roles", "status", "failed_logins", "created_at", "updated_at"],
            records=[
                (u, f"issuer{i}@bench.example", "x", ["ISSUER"], "ACTIVE", 0, now, now) for i, u in enumerate(issuers)
            ],
        )
        asset_ids = _uuids(n_assets, rng)
        valuation_ids = _uuids(n_assets, rng)
        assets, valuations, tokens = [], [], []
        statuses = rng.choices(STATUSES, WEIGHTS, k=n_assets)
        cents = [rng.randrange(10_000, 500_000_000_00) for _ in range(n_assets)]
        days = [date(2026, 1, 1) + timedelta(days=d) for d in range(300)]
        names = [f"{w1} {w2}" for w2 in WORDS for w1 in WORDS]  # index i % 400 == (i % 20, (i // 20) % 20)
        supply = Decimal(10**24)
        for i in range(n_assets):
            status = statuses[i]
            atype = TYPES[i % 6]
            amount = Decimal(cents[i]).scaleb(-2)
            as_of = days[i % 300]
            created = now - timedelta(seconds=n_assets - i)
            name = f"{names[i % 400]} {NOUNS[atype]} {i}"
            aid = asset_ids[i]
            assets.append(
                (
                    aid,
                    issuers[i % ISSUERS],
                    name,
                    atype,
                    status,
                    "",
                    COUNTRIES[i % 10],
                    "EUR",
                    "{}",
                    None,
                    valuation_ids[i],
                    amount,
                    "EUR",
                    as_of,
                    created,
                    created,
                )
            )
            valuations.append((valuation_ids[i], aid, amount, "EUR", "NAV", as_of, "seed", created))
            if status in TOKENIZED:
                tokens.append(
                    (
                        uuid.UUID(int=rng.getrandbits(128), version=4),
                        CHAINS[i % 3],
                        f"0x{i + 1:040x}",
                        "SECURITY",
                        aid,
                        name[:100],
                        f"T{i}",
                        18,
                        supply,
                        False,
                        1000 + i,
                        created,
                        created,
                    )
                )
        timings["generate"] = time.perf_counter() - started
        t = time.perf_counter()
        await asyncio.gather(
            _copy(
                url,
                "assets",
                [
                    "id",
                    "issuer_id",
                    "name",
                    "type",
                    "status",
                    "description",
                    "jurisdiction",
                    "currency",
                    "attributes",
                    "review_reason",
                    "latest_valuation_id",
                    "latest_valuation_amount",
                    "latest_valuation_currency",
                    "latest_valuation_as_of",
                    "created_at",
                    "updated_at",
                ],
                assets,
            ),
            _copy(
                url,
                "valuations",
                ["id", "asset_id", "amount", "currency", "method", "as_of", "source", "created_at"],
                valuations,
            ),
            _copy(
                url,
                "tokens",
                [
                    "id",
                    "chain_id",
                    "address",
                    "kind",
                    "asset_id",
                    "name",
                    "symbol",
                    "decimals",
                    "total_supply",
                    "paused",
                    "start_block",
                    "created_at",
                    "updated_at",
                ],
                tokens,
            ),
        )
        timings["copy"] = time.perf_counter() - t
        t = time.perf_counter()
        await conn.execute("SET session_replication_role = origin")
        await _build_indexes(url, index_defs)
        timings["indexes"] = time.perf_counter() - t
        t = time.perf_counter()
        await conn.execute("ANALYZE users; ANALYZE assets; ANALYZE valuations; ANALYZE tokens")
        timings["analyze"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - started
        timings["rows"] = float(len(assets) + len(valuations) + len(tokens) + ISSUERS)
    finally:
        await conn.close()
    return timings


async def ensure_seeded(n_assets: int, name: str = BENCH_DB, reseed: bool = False) -> tuple[str, dict[str, float]]:
    """Reuse the bench database when it already holds n_assets assets."""
    url = database_url(name)
    if not reseed:
        try:
            conn = await asyncpg.connect(_dsn(url))
            try:
                count = await conn.fetchval("SELECT count(*) FROM assets")
            finally:
                await conn.close()
            if count == n_assets:
                return url, {}
        except (asyncpg.InvalidCatalogNameError, asyncpg.UndefinedTableError):
            pass
    url = await create_database(name)
    return url, await seed(url, n_assets)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=1_000_000)
    parser.add_argument("--db", default=BENCH_DB)
    args = parser.parse_args()
    url, timings = asyncio.run(ensure_seeded(args.assets, args.db, reseed=True))
    print(
        f"seeded {args.assets:,} assets into {args.db}: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items() if k != "rows")
        + f" ({timings['rows']:,.0f} rows)"
    )


if __name__ == "__main__":
    main()
