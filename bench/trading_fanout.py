"""Benchmark (issue 5c): fan-out of `trades(marketId)` to many websocket subscribers on one API process.

    .venv/bin/python -m bench.trading_fanout [--subscribers 1000 5000] [--trades 50] [--clients N]

For each subscriber count, one uvicorn worker runs twice in the same run: with shared subscriptions (one
execution per distinct operation per process, the default) and with per-subscriber execution
(RWA_SHARED_SUBSCRIPTIONS=0). Client processes open the graphql-transport-ws connections and subscribe; then one
trade event every 100 ms is published to the market's Redis channel exactly as the matching transaction publishes
it (with `createdAt` = publish time), so the server does only the fan-out work. The clients
(bench/fanout_client.py) are raw asyncio protocols on uvloop that only split frames and read `createdAt`, so that
at thousands of subscribers the server, not the clients, is what is measured; by default one client process per
two cores: the server needs a core of its own for the fan-out burst, and more client processes than the remaining
cores only add wake-ups and context switches that both sides pay for (on 2 cores, 4 client processes doubled p99).
Reported: delivered messages, delivery latency p50/p99 (publish -> client receive), and server CPU (utime+stime
from /proc/<pid>/stat) per delivered message over the publishing window, with the kernel's share (on loopback
each frame's TCP send, including the receiving side's softirq work, is system time of the server) and the client
processes' CPU in the same window, total and the busiest process's share of the window (they must not be the
bottleneck: a client near 100% would inflate the latencies).
Everything runs on 127.0.0.1 and stops itself (timeouts on every wait, processes killed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.harness import REDIS_URL, REPO, free_port, scratch_database
from cli.main import WEBSOCKETS  # the server runs as `rwa serve` runs it

# last: 0 -> the stream starts with an empty snapshot (no createdAt: the clients do not count it)
QUERY = (
    "subscription($m: UUID!) { trades(marketId: $m, last: 0) { sequence "
    "trades { id price quantity takerSide sequence createdAt } } }"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds; on loopback the kernel's TCP work for each frame is system time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime


async def _client_main(
    url: str,
    token: str,
    market_id: str,
    n: int,
    ready: mp.Queue,
    go: mp.Event,  # type: ignore[type-arg]
    stop: mp.Event,
    out: mp.Queue,
) -> None:  # type: ignore[type-arg]
    from bench.fanout_client import run_subscribers

    stats = await run_subscribers(
        url, token, QUERY, {"m": market_id}, n, lambda ok: ready.put(1 if ok else 0), stop.is_set
    )
    out.put((stats.received, stats.errors, stats.latencies))


def client_process(*args: object) -> None:
    import uvloop

    uvloop.run(_client_main(*args))  # type: ignore[arg-type]


@dataclass
class RunResult:
    mode: str
    subscribers: int
    connected: int
    delivered: int
    expected: int
    p50_ms: float
    p99_ms: float
    cpu_us_per_msg: float
    cpu_s: float
    work_us_per_msg: float  # idle CPU (same window length, no events) subtracted
    sys_share: float  # of the CPU in the publishing window, the kernel's part
    client_cpu_s: float  # all client processes, same window: they must not be the bottleneck
    client_busy: float  # the busiest client process's CPU / window length


def start_api(env: dict[str, str]) -> tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "server.app:create_app_from_env",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            os.environ.get("BENCH_WS", WEBSOCKETS),
            "--no-proxy-headers",
            "--backlog",
            "8192",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO,
        env={**os.environ, **env, "LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"api exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            httpx.get(url + "/healthz", timeout=1)
            return proc, url
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("api did not start")
            time.sleep(0.1)


async def publish_trades(prefix: str, market_id: str, count: int, interval_s: float) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    channel = f"{prefix}market:{market_id}:trades"
    try:
        next_at = time.monotonic()
        for i in range(count):
            event = {
                "id": str(uuid.uuid4()),
                "sequence": i + 1,
                "marketId": market_id,
                "takerSide": "BUY",
                "price": "10.5",
                "quantity": "3",
                "createdAt": datetime.now(UTC).isoformat(),
            }
            await redis.publish(channel, json.dumps(event, separators=(",", ":")))
            next_at += interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        await redis.aclose()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_one(mode: str, n: int, env: dict[str, str], token: str, market_id: str, trades: int, clients: int) -> RunResult:
    ctx = mp.get_context("spawn")
    env = {**env, "RWA_SHARED_SUBSCRIPTIONS": "1" if mode == "shared" else "0"}
    proc, url = start_api(env)
    ws_url = url.replace("http://", "ws://") + "/graphql"
    ready, out = ctx.Queue(), ctx.Queue()
    go, stop = ctx.Event(), ctx.Event()
    per = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    workers = [
        ctx.Process(target=client_process, args=(ws_url, token, market_id, k, ready, go, stop, out), daemon=True)
        for k in per
        if k
    ]
    try:
        for w in workers:
            w.start()
        connected = failed = 0
        deadline = time.monotonic() + 180
        while connected + failed < n and time.monotonic() < deadline:
            try:
                ok = ready.get(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                break
            connected += ok
            failed += 1 - ok
        time.sleep(2.0)  # subscriptions reach their Redis listeners
        idle0, t_idle = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(2.0)  # what the server burns with N idle sockets, subtracted below
        idle_rate = (cpu_seconds(proc.pid) - idle0) / (time.monotonic() - t_idle)
        clients0 = [cpu_seconds(w.pid) for w in workers]
        split0 = cpu_split(proc.pid)
        cpu0, t0 = sum(split0), time.monotonic()
        asyncio.run(publish_trades(env["RWA_REDIS_PREFIX"], market_id, trades, 0.1))
        time.sleep(3.0)  # drain
        split1 = cpu_split(proc.pid)
        clients1 = [cpu_seconds(w.pid) for w in workers]
        cpu1, t1 = sum(split1), time.monotonic()
        stop.set()
        delivered, errors, latencies = 0, 0, []
        for _ in workers:
            r, e, lat = out.get(timeout=60)
            delivered += r
            errors += e
            latencies += lat
        cpu = cpu1 - cpu0
        work = max(0.0, cpu - idle_rate * (t1 - t0))
        return RunResult(
            mode,
            n,
            connected,
            delivered,
            connected * trades,
            percentile(latencies, 0.5) * 1000,
            percentile(latencies, 0.99) * 1000,
            cpu / max(delivered, 1) * 1e6,
            cpu,
            work / max(delivered, 1) * 1e6,
            (split1[1] - split0[1]) / max(cpu, 1e-9),
            sum(clients1) - sum(clients0),
            max(b - a for a, b in zip(clients0, clients1)) / (t1 - t0),
        )
    finally:
        stop.set()
        for w in workers:
            w.join(15)
            if w.is_alive():
                w.kill()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _setup(database_url: str) -> tuple[str, uuid.UUID]:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from tests.trading.factories import make_market, make_user

    engine = create_async_engine(database_url, pool_size=2)
    sf = async_sessionmaker(engine, expire_on_commit=False)
    m = await make_market(sf)
    user = await make_user(sf)
    await engine.dispose()
    return str(m.market_id), user


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--trades", type=int, default=50, help="trades published, one every 100 ms")
    parser.add_argument("--clients", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="client processes")
    parser.add_argument(
        "--modes", nargs="+", default=["shared", "per-subscriber"], choices=["shared", "per-subscriber"]
    )
    args = parser.parse_args()

    from core.jwt_keys import KeyRing, generate_private_key_pem

    pem = generate_private_key_pem()
    results = []
    with scratch_database() as db_url, tempfile.TemporaryDirectory() as data_dir:
        market_id, user_id = asyncio.run(_setup(db_url))
        token, _ = KeyRing(pem, "bench", ttl_s=3600).issue(user_id, ["INVESTOR"])
        env = {
            "DATABASE_URL": db_url,
            "REDIS_URL": REDIS_URL,
            "RWA_ENV": "test",
            "RWA_DATA_DIR": data_dir,
            "JWT_PRIVATE_KEY": pem,
            "JWT_KEY_ID": "bench",
            "KYC_ENCRYPTION_KEY": os.urandom(32).hex(),
            "RWA_REDIS_PREFIX": f"rwa-bench-fanout:{uuid.uuid4().hex[:6]}:",
        }
        for n in args.subscribers:
            for mode in args.modes:
                r = run_one(mode, n, env, token, market_id, args.trades, args.clients)
                results.append(r)
                print(f"  {mode} x {n}: delivered {r.delivered}/{r.expected}", flush=True)
    print(
        f"\n{'mode':<16} {'subs':>6} {'conn':>6} {'delivered':>10} {'expected':>9} {'p50 ms':>8} {'p99 ms':>9} "
        f"{'CPU s':>6} {'CPU us/msg':>10} {'-idle us/msg':>12} {'sys %':>6} {'clients CPU s':>13} {'busiest client %':>16}"
    )
    for r in results:
        print(
            f"{r.mode:<16} {r.subscribers:>6} {r.connected:>6} {r.delivered:>10} {r.expected:>9} {r.p50_ms:>8.1f} "
            f"{r.p99_ms:>9.1f} {r.cpu_s:>6.2f} {r.cpu_us_per_msg:>10.1f} {r.work_us_per_msg:>12.1f} "
            f"{100 * r.sys_share:>6.0f} {r.client_cpu_s:>13.2f} {100 * r.client_busy:>16.0f}"
        )
    by = {(r.mode, r.subscribers): r for r in results}
    for n in args.subscribers if len(args.modes) == 2 else ():
        s, p = by[("shared", n)], by[("per-subscriber", n)]
        print(
            f"{n} subscribers: per-subscriber / shared CPU per delivered message = "
            f"{p.cpu_us_per_msg / s.cpu_us_per_msg:.1f}x (idle-corrected "
            f"{p.work_us_per_msg / max(s.work_us_per_msg, 1e-9):.1f}x); shared p99 {s.p99_ms:.1f} ms"
        )


if __name__ == "__main__":
    main()
