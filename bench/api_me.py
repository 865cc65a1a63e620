"""Benchmark (issue 2): authenticated `{ me { id email roles } }` over HTTP, one uvicorn worker, wrk -c50,
next to a plain Starlette+asyncpg JSON endpoint doing the same read, in the same run.

    .venv/bin/python -m bench.api_me [--duration 10]

Targets: >= 1/6 of the plain endpoint's req/s, p99 < 50 ms, RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import uuid

from bench.harness import REDIS_URL, print_table, scratch_database, uvicorn_server, wrk_post


async def _create_user(database_url: str) -> uuid.UUID:
    from core.db import create_engine, create_session_factory
    from core.passwords import hash_password
    from models.identity import User

    engine = create_engine(database_url, pool_size=1)
    async with create_session_factory(engine)() as s:
        user = User(
            id=uuid.uuid4(),
            email="bench@example.com",
            password_hash=hash_password("bench-pass-123"),
            roles=["INVESTOR", "ISSUER"],
        )
        s.add(user)
        await s.commit()
    await engine.dispose()
    return user.id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()

    from core.jwt_keys import KeyRing, generate_private_key_pem

    pem = generate_private_key_pem()
    with scratch_database() as db_url, tempfile.TemporaryDirectory() as data_dir:
        user_id = asyncio.run(_create_user(db_url))
        token, _ = KeyRing(pem, "bench", ttl_s=3600).issue(user_id, ["INVESTOR", "ISSUER"])
        env = {
            "DATABASE_URL": db_url,
            "REDIS_URL": REDIS_URL,
            "RWA_ENV": "test",
            "RWA_DATA_DIR": data_dir,
            "JWT_PRIVATE_KEY": pem,
            "JWT_KEY_ID": "bench",
            "KYC_ENCRYPTION_KEY": os.urandom(32).hex(),
            "RWA_REDIS_PREFIX": "rwa-bench:",
            "BENCH_USER_ID": str(user_id),
        }
        body = json.dumps({"query": "{ me { id email roles } }"})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        results = []
        with uvicorn_server("bench.plain_app:create_app", env) as plain:
            wrk_post("warmup", plain.url + "/me", body, headers, duration_s=2, connections=args.connections)
            baseline = wrk_post(
                "plain starlette+asyncpg",
                plain.url + "/me",
                body,
                headers,
                duration_s=args.duration,
                connections=args.connections,
            )
            baseline.peak_rss_mb = plain.peak_rss_mb()
        with uvicorn_server("server.app:create_app_from_env", env) as api:
            wrk_post("warmup", api.url + "/graphql", body, headers, duration_s=2, connections=args.connections)
            graphql = wrk_post(
                "graphql { me { id email roles } }",
                api.url + "/graphql",
                body,
                headers,
                duration_s=args.duration,
                connections=args.connections,
            )
            graphql.peak_rss_mb = api.peak_rss_mb()
        results = [baseline, graphql]
        print_table(results, baseline)
        ratio = graphql.requests_per_s / baseline.requests_per_s
        print(
            f"\ntargets: ratio >= 0.167 -> {ratio:.3f} {'OK' if ratio >= 1 / 6 else 'MISS'}; "
            f"p99 < 50 ms -> {graphql.p99_ms:.1f} {'OK' if graphql.p99_ms < 50 else 'MISS'}; "
            f"RSS < 150 MB -> {graphql.peak_rss_mb:.0f} {'OK' if (graphql.peak_rss_mb or 0) < 150 else 'MISS'}"
        )


if __name__ == "__main__":
    main()
