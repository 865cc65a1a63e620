"""Benchmark (issue 4): the canonical asset list at 1,000,000 assets, our API next to PostGraphile, one run.

    .venv/bin/python -m bench.assets_list [--assets 1000000] [--duration 15] [--rounds 3] [--connections 8]
                                          [--workers 2] [--reseed]

Seeds (or reuses) the separate database `rwa_bench_assets` (bench/seed_assets.py, COPY), then runs the same
list through wrk against: `rwa serve`-equivalent uvicorn (1 worker) twice, without its response cache
(RESPONSE_CACHE_ENABLED=false: every request executes) and with it (the default: server/response_cache.py), and
PostGraphile 4 (npm, installed into a temp dir at bench time, 1 node process, no response cache of its own) on the
same tables, all three up at once and measured in alternating wrk slices. The query: first 50 ACTIVE BONDs ordered
by latest valuation (desc), with issuer and tokens. Prints req/s, p50, p99, peak RSS, the ratios (targets:
uncached >= 1.0x, cached >= 5x PostGraphile) and, per side, the CPU milliseconds per request of its server
process and of the Postgres backends of the bench database, measured over the same slices.

Fairness: the same tables, indexes, rows, page (50, keyset by (latest valuation, id) desc) and relations (issuer,
latest valuation, tokens) for both; both single-process (1 uvicorn worker, 1 node process); both warmed up 3 s;
wrk -t1 -c8 on the same machine, both servers up at once and measured in alternating slices, so load drift from
other work hits both sides alike. Both read with one SQL statement per request and both build the rows' JSON
inside Postgres: PostGraphile the whole response (json_build_object/json_agg), ours each node's JSON text
(resolvers/assets/page_json.py, for selections it renders exactly; others build objects in Python), with the
cursors, pageInfo and the connection around them added in Python; both return the same fields, cursors and
pageInfo. Ours also verifies a JWT per request and decides visibility from its roles
(ADMIN: every asset, so no extra filter); PostGraphile runs anonymous, without row-level security. PostGraphile
answers from its own process with no cache (none is built in); the cached side answers repeats of one request
from memory after a Redis version check, which is what a cache gives a real client reading a hot list; the
uncached side is the like-for-like comparison. On a machine shared with other work, req/s and p99 swing with its
load (quote same-run ratios); CPU per request (server + Postgres) is the steadier comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from bench.harness import (
    REDIS_URL,
    Server,
    WrkResult,
    _children,
    free_port,
    print_table,
    running_server,
    uvicorn_server,
    wrk_post,
)
from bench.seed_assets import ensure_seeded

OURS = (
    "{ assets(first: 50, filter: {status: ACTIVE, type: BOND}, orderBy: VALUATION_DESC) { edges { cursor node "
    "{ id name status type latestValuation { amount currency } issuer { id email } "
    "tokens { chainId address symbol decimals } } } pageInfo { hasNextPage endCursor } } }"
)
POSTGRAPHILE = (
    "{ allAssets(first: 50, condition: {status: ACTIVE, type: BOND}, "
    "orderBy: [LATEST_VALUATION_AMOUNT_DESC, ID_DESC]) { edges { cursor node { id name status type "
    "latestValuationAmount latestValuationCurrency userByIssuerId { id email } "
    "tokensByAssetId { nodes { chainId address symbol decimals } } } } "
    "pageInfo { hasNextPage endCursor } } }"
)
POSTGRAPHILE_VERSION = os.environ.get("BENCH_POSTGRAPHILE_VERSION", "4")


def install_postgraphile(target: Path) -> Path:
    """npm install into `target` (a temp dir; never the repo's package.json). Returns the CLI path."""
    cli = target / "node_modules" / ".bin" / "postgraphile"
    if not cli.exists():
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
                str(target),
                f"postgraphile@{POSTGRAPHILE_VERSION}",
            ],
            check=True,
            timeout=600,
            capture_output=True,
        )
    return cli


@contextmanager
def postgraphile_server(cli: Path, database_url: str) -> Iterator[Server]:
    port = free_port()
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    proc = subprocess.Popen(
        [
            str(cli),
            "-c",
            dsn,
            "--schema",
            "public",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--disable-query-log",
            "--disable-graphiql",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "NODE_ENV": "production"},
    )
    with running_server(
        "postgraphile",
        proc,
        f"http://127.0.0.1:{port}",
        lambda url: httpx.post(url + "/graphql", json={"query": "{ __typename }"}, timeout=2),
        timeout_s=60,
    ) as server:
        yield server


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _backends(database_url: str, db: str) -> list[int]:
    async def pids() -> list[int]:
        import asyncpg

        conn = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", db
            )
        finally:
            await conn.close()
        return [r[0] for r in rows]

    return asyncio.run(pids())


@contextmanager
def cpu_per_request(server: Server, database_url: str, db: str, into: dict[str, float]) -> Iterator[None]:
    """CPU seconds the server process (and its workers) and the Postgres backends of the bench database spent
    while the block ran, added to `into`. Only one server is loaded at a time (alternating slices), so the
    backends' CPU in a slice is that server's; backends of other databases (other engineers) are not counted."""
    tree = [server.proc.pid, *_children(server.proc.pid)]
    before = {pid: _cpu_s(pid) for pid in _backends(database_url, db)}
    server_before = sum(_cpu_s(pid) for pid in tree)
    yield
    server_after = sum(_cpu_s(pid) for pid in tree)
    after = {pid: _cpu_s(pid) for pid in _backends(database_url, db)}
    into["server"] = into.get("server", 0.0) + server_after - server_before
    into["postgres"] = into.get("postgres", 0.0) + sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def check(url: str, body: str, headers: dict[str, str], path: tuple[str, ...]) -> int:
    """One request first: the answer must be a full page without errors (otherwise wrk measures errors)."""
    resp = httpx.post(url, content=body, headers=headers, timeout=30)
    data = resp.json()
    assert resp.status_code == 200 and not data.get("errors"), data
    node = data["data"]
    for key in path:
        node = node[key]
    return len(node)


def combine(name: str, runs: list[WrkResult]) -> WrkResult:
    return WrkResult(
        name,
        sum(r.requests_per_s for r in runs) / len(runs),
        statistics.median(r.p50_ms for r in runs),
        max(r.p99_ms for r in runs),
        sum(r.non_2xx for r in runs),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--db", default="rwa_bench_assets")
    parser.add_argument("--workers", type=int, default=1, help="also measure uvicorn with this many workers")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from core.jwt_keys import KeyRing, generate_private_key_pem

    started = time.perf_counter()
    db_url, timings = asyncio.run(ensure_seeded(args.assets, args.db, reseed=args.reseed))
    if timings:
        print(
            f"seeded {args.assets:,} assets in {timings['total']:.1f}s ("
            + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items() if k not in ("total", "rows"))
            + ")"
        )
    else:
        print(f"reusing {args.assets:,} seeded assets ({time.perf_counter() - started:.1f}s)")

    pem = generate_private_key_pem()
    token, _ = KeyRing(pem, "bench", ttl_s=3600).issue(uuid.uuid4(), ["ADMIN"])
    pg_dir = Path(os.environ.get("BENCH_POSTGRAPHILE_DIR") or tempfile.mkdtemp(prefix="postgraphile-"))
    cli = install_postgraphile(pg_dir)
    results = []
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            env = {
                "DATABASE_URL": db_url,
                "REDIS_URL": REDIS_URL,
                "RWA_ENV": "test",
                "RWA_DATA_DIR": data_dir,
                "JWT_PRIVATE_KEY": pem,
                "JWT_KEY_ID": "bench",
                "KYC_ENCRYPTION_KEY": os.urandom(32).hex(),
                "RWA_REDIS_PREFIX": "rwa-bench:",
                "LOG_LEVEL": "WARNING",
            }
            body = json.dumps({"query": OURS})
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            pg_body = json.dumps({"query": POSTGRAPHILE})
            pg_headers = {"Content-Type": "application/json"}
            # both servers up at once, measured in alternating slices: this machine's load drifts, and a
            # sequential A-then-B run would charge the drift to one side
            uncached_env = {**env, "RESPONSE_CACHE_ENABLED": "false"}
            with (
                uvicorn_server("server.app:create_app_from_env", uncached_env) as api,
                uvicorn_server("server.app:create_app_from_env", env) as cached_api,
                postgraphile_server(cli, db_url) as pg,
            ):
                rows = check(api.url + "/graphql", body, headers, ("assets", "edges"))
                check(cached_api.url + "/graphql", body, headers, ("assets", "edges"))
                pg_rows = check(pg.url + "/graphql", pg_body, pg_headers, ("allAssets", "edges"))
                targets = [
                    ("stablerwa assets(first: 50)", api, body, headers),
                    (f"postgraphile@{POSTGRAPHILE_VERSION} allAssets(50)", pg, pg_body, pg_headers),
                    ("stablerwa, response cache", cached_api, body, headers),
                ]
                for _, server, b, h in targets:
                    wrk_post(
                        "warmup", server.url + "/graphql", b, h, duration_s=3, connections=args.connections, threads=1
                    )
                slices: dict[str, list] = {name: [] for name, *_ in targets}
                cpu: dict[str, dict[str, float]] = {name: {} for name, *_ in targets}
                slice_s = max(args.duration // args.rounds, 2)
                for _ in range(args.rounds):
                    for name, server, b, h in targets:
                        with cpu_per_request(server, db_url, args.db, cpu[name]):
                            result = wrk_post(
                                name,
                                server.url + "/graphql",
                                b,
                                h,
                                duration_s=slice_s,
                                connections=args.connections,
                                threads=1,
                            )
                        slices[name].append(result)
                        cpu[name]["requests"] = cpu[name].get("requests", 0) + result.requests_per_s * slice_s
                ours, theirs, cached = (combine(name, slices[name]) for name, *_ in targets)
                ours.peak_rss_mb, theirs.peak_rss_mb = api.peak_rss_mb(), pg.peak_rss_mb()
                cached.peak_rss_mb = cached_api.peak_rss_mb()
                ours_slices, pg_slices, cached_slices = slices.values()
                per_round = [o.requests_per_s / t.requests_per_s for o, t in zip(ours_slices, pg_slices)]
                cached_round = [c.requests_per_s / t.requests_per_s for c, t in zip(cached_slices, pg_slices)]
            extra = []
            if args.workers > 1:
                with uvicorn_server("server.app:create_app_from_env", env, workers=args.workers) as api:
                    check(api.url + "/graphql", body, headers, ("assets", "edges"))
                    wrk_post(
                        "warmup",
                        api.url + "/graphql",
                        body,
                        headers,
                        duration_s=3,
                        connections=args.connections,
                        threads=1,
                    )
                    multi = wrk_post(
                        f"stablerwa ({args.workers} workers)",
                        api.url + "/graphql",
                        body,
                        headers,
                        duration_s=args.duration,
                        connections=args.connections,
                        threads=1,
                    )
                    multi.peak_rss_mb = api.peak_rss_mb()
                    extra.append(multi)
            results = [theirs, ours, cached, *extra]
    finally:
        if not os.environ.get("BENCH_POSTGRAPHILE_DIR"):
            shutil.rmtree(pg_dir, ignore_errors=True)
    print(
        f"\nrows per page: ours {rows}, postgraphile {pg_rows}; wrk -t1 -c{args.connections}, {args.rounds} "
        f"alternating rounds of {max(args.duration // args.rounds, 2)}s each; p50 = median of rounds, p99 = worst"
    )
    print("uncached ratio per round: " + ", ".join(f"{r:.2f}" for r in per_round))
    print("CPU ms per request (server process + Postgres backends of the bench database, same slices):")
    for name, used in cpu.items():
        n = used["requests"]
        print(
            f"  {name:<34} server {used['server'] / n * 1000:6.2f}  postgres {used['postgres'] / n * 1000:6.2f}  "
            f"total {(used['server'] + used['postgres']) / n * 1000:6.2f}"
        )
    ours_cpu, pg_cpu = (cpu[name] for name, *_ in targets[:2])
    cpu_ratio = ((pg_cpu["server"] + pg_cpu["postgres"]) / pg_cpu["requests"]) / (
        (ours_cpu["server"] + ours_cpu["postgres"]) / ours_cpu["requests"]
    )
    print("cached ratio per round: " + ", ".join(f"{r:.2f}" for r in cached_round))
    print_table(results, theirs)
    ratio = ours.requests_per_s / theirs.requests_per_s
    cached_ratio = cached.requests_per_s / theirs.requests_per_s
    print(
        f"\ntargets: uncached req/s >= 1.0x PostGraphile -> {ratio:.2f}x {'OK' if ratio >= 1.0 else 'MISS'}; "
        f"p99 < 50 ms -> {ours.p99_ms:.1f} ms {'OK' if ours.p99_ms < 50 else 'MISS'}; "
        f"cached >= 5x -> {cached_ratio:.2f}x {'OK' if cached_ratio >= 5 else 'MISS'}; "
        f"uncached requests per CPU second vs PostGraphile -> {cpu_ratio:.2f}x"
    )


if __name__ == "__main__":
    main()
