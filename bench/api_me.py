"""Benchmark (issues 2, 16): authenticated `{ me { id email roles } }` over HTTP, one uvicorn worker, wrk -c50,
next to a plain Starlette+asyncpg JSON endpoint doing the same read (bench/plain_app.py), in the same run.

    .venv/bin/python -m bench.api_me [--duration 10] [--rounds 3]

Targets (issue 16): >= 0.5x the plain endpoint's req/s, p99 < 50 ms at 50 connections, RSS < 150 MB.

Fairness:
- Same for both: one uvicorn worker (httptools, uvloop, no access log, LOG_LEVEL=WARNING), the same wrk load
  (2 threads, 50 keep-alive connections, the same body and Authorization header), one `SELECT ... FROM users
  WHERE id = $1` on an asyncpg pool per request. Nothing caches the answer: every request reads the row (there is
  no response cache for `me`; server/response_cache.py never keeps per-user reads).
- What the API does and the peer does not: verify the bearer token (signature checked once per distinct token,
  then remembered until it expires) and check it against the revocation list (an in-memory mirror of Redis, no
  I/O per request), resolve the caller, parse and validate the document (cached per distinct document), check
  the field's permission, compute the query cost (answered in `extensions.cost`), count the operation in
  Prometheus (a counter and a latency histogram) and the HTTP request, give the request an id, guard the JSON
  body (size, nesting, NUL/surrogates), add the security headers and `Cache-Control: no-store`.
- What the peer does and the API does not: asyncpg's default reset of the connection on release (a second round
  trip per request; the API's read pool skips it: core/services.py). The peer ignores the Authorization header.
- Process tuning: the API worker freezes its startup objects and collects young objects every 10,000 allocations
  (server/app.py); the peer runs CPython's defaults.
- Warm-up: 2 s of wrk on each server before measuring. Both servers run during the whole bench (each idle while
  the other is measured); rounds alternate the order (plain first, then the API first), so a change in the load
  of a shared machine hits both, and every ratio compares runs of the same round.
- Timing boundaries: req/s and latency percentiles are wrk's (client side, keep-alive, connection setup
  excluded). CPU/req is the server process's CPU time (user + system, /proc) during its wrk run divided by the
  requests wrk completed: it includes uvicorn's HTTP handling and excludes wrk and Postgres. On a loaded machine
  req/s ratios swing with the neighbours; the CPU ratio is the steadier measure of the servers' own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import uuid
from pathlib import Path

from bench.harness import REDIS_URL, Server, WrkResult, scratch_database, uvicorn_server, wrk_post


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


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (its worker: --workers 1 serves in the uvicorn process itself)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(
    name: str, server: Server, path: str, body: str, headers: dict[str, str], args: argparse.Namespace
) -> tuple[WrkResult, float]:
    """One wrk run, and the server's CPU microseconds per completed request during it."""
    before = _cpu_s(server.proc.pid)
    result = wrk_post(name, server.url + path, body, headers, duration_s=args.duration, connections=args.connections)
    cpu_us = (_cpu_s(server.proc.pid) - before) / max(result.requests_per_s * args.duration, 1) * 1e6
    result.peak_rss_mb = server.peak_rss_mb()
    return result, cpu_us


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
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
        rows: list[tuple[int, WrkResult, float, WrkResult, float]] = []
        with (
            uvicorn_server("bench.plain_app:create_app", env) as plain,
            uvicorn_server("server.app:create_app_from_env", env) as api,
        ):
            targets = {"plain": (plain, "/me"), "api": (api, "/graphql")}
            for server, path in targets.values():
                wrk_post("warmup", server.url + path, body, headers, duration_s=2, connections=args.connections)
            for round_ in range(1, args.rounds + 1):
                measured = {}
                for which in ("plain", "api") if round_ % 2 else ("api", "plain"):
                    server, path = targets[which]
                    measured[which] = _measured(which, server, path, body, headers, args)
                rows.append((round_, *measured["plain"], *measured["api"]))
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores shared: compare ratios, not req/s)")
        print(f"{'round':<6} {'target':<34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'RSS MB':>7}")
        for round_, p, p_cpu, a, a_cpu in rows:
            for name, r, cpu in (
                ("plain starlette+asyncpg", p, p_cpu),
                ("graphql { me { id email roles } }", a, a_cpu),
            ):
                print(
                    f"{round_:<6} {name:<34} {r.requests_per_s:>8.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {cpu:>10.0f} "
                    f"{r.peak_rss_mb or 0:>7.0f}" + (f"  non-2xx {r.non_2xx}" if r.non_2xx else "")
                )
            print(
                f"{'':<6} ratio: req/s {a.requests_per_s / p.requests_per_s:.3f}, CPU per request {p_cpu / a_cpu:.3f}"
            )
        ratio = statistics.median(a.requests_per_s / p.requests_per_s for _, p, _, a, _ in rows)
        cpu_ratio = statistics.median(p_cpu / a_cpu for _, _, p_cpu, _, a_cpu in rows)
        p99 = statistics.median(a.p99_ms for *_, a, _ in rows)
        rss = max(a.peak_rss_mb or 0 for *_, a, _ in rows)
        print(
            f"\ntargets (medians of {len(rows)} rounds): ratio >= 0.5 -> {ratio:.3f} {'OK' if ratio >= 0.5 else 'MISS'} "
            f"(CPU per request: {cpu_ratio:.3f}); p99 < 50 ms -> {p99:.1f} {'OK' if p99 < 50 else 'MISS'}; "
            f"RSS < 150 MB -> {rss:.0f} {'OK' if rss < 150 else 'MISS'}"
        )


if __name__ == "__main__":
    main()
