"""Scale-out on one machine: several `rwa serve` processes and two `rwa index run` on one Postgres and Redis.

    .venv/bin/python -m bench.scale_out                 # the documented run (wrk 10 s per measurement)
    .venv/bin/python -m bench.scale_out --quick         # the reduced form CI runs (tests/platform/test_scale_out.py)

What it does and reports (JSON on the last line of stdout; exit 1 if a check fails):

- API throughput: `{ __typename }` POSTs with wrk against one `rwa serve` process, then against three at once
  (one wrk per process, in parallel): requests/s of three vs one, on the same machine in the same run.
- Rolling restart under load: 16 concurrent clients send requests through a client-side balancer over the three
  processes (what a Service's endpoints do); each process in turn is taken out of rotation, given 0.5 s (the
  pod's preStop sleep), sent SIGTERM while requests are still in flight on it (uvicorn finishes them), restarted
  on the same port and put back once /readyz answers. Lost requests (transport errors, non-200) must be 0. A
  graphql-transport-ws socket open on each process must be closed with 1012 (service restart: reconnect).
- Indexer takeover: two `rwa index run` on one anvil chain with a token under traffic; the writer (found on the
  ops ports' /readyz) is killed with SIGKILL; the standby must report itself writer within a bound, the index must
  reach the head again, and every holder must match balanceOf (`rwa index verify`'s check), with no duplicate
  events.

- Worker killed mid-job: two `rwa worker` on RabbitMQ (a vhost of its own); a webhook delivery is queued to a
  receiver that holds the first POST open; the worker process sending it is found (by its TCP connection) and
  killed with SIGKILL mid-job; RabbitMQ redelivers the unacked message to the other worker. The job must complete
  exactly once: the delivery DELIVERED with one attempt recorded, one POST answered by the receiver.
- Trades across processes: a `trades(marketId)` subscriber on the first API process receives a trade placed (a
  crossing SELL and BUY over HTTP) on the second, through Redis pub/sub (market and traders seeded in the database
  with tests/trading/factories.py).

Loopback only: Postgres of BENCH_DATABASE_URL/TEST_DATABASE_URL (a scratch database, dropped), Redis of
BENCH_REDIS_URL (its own key prefix), its own anvil.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import REDIS_URL, free_port, scratch_database, wrk_post  # noqa: E402

RWA = str(Path(sys.executable).with_name("rwa"))
PROBE = '{"query": "{ __typename }"}'


def _jwt_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def base_env(db_url: str, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "RWA_ENV": "test",
        "RWA_DATA_DIR": str(workdir / "data"),
        "RWA_REDIS_PREFIX": f"rwa-scale:{uuid.uuid4().hex[:8]}:",
        "JWT_PRIVATE_KEY": _jwt_key(),
        "KYC_ENCRYPTION_KEY": os.urandom(32).hex(),
        "LOG_LEVEL": "WARNING",
        "MIGRATE_ON_START": "false",
        "RWA_PROMETHEUS_BASE_DIR": str(workdir / "prom"),
    }


class Api:
    """One `rwa serve` process (one uvicorn worker) on a fixed port."""

    def __init__(self, env: dict[str, str], workdir: Path, index: int) -> None:
        self.env, self.workdir, self.index = env, workdir, index
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / f"api{self.index}.log", "ab")
        self.proc = subprocess.Popen(
            [RWA, "serve", "--port", str(self.port), "--metrics-port", "0"],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"api{self.index} exited"
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"api{self.index} not ready in {timeout}s")

    def terminate(self) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(40)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def throughput(apis: list[Api], seconds: int) -> dict[str, Any]:
    one = wrk_post(
        "1 process",
        apis[0].url + "/graphql",
        PROBE,
        {"content-type": "application/json"},
        connections=32,
        duration_s=seconds,
        threads=1,
    )
    results: list[Any] = [None] * len(apis)

    def run(i: int) -> None:
        results[i] = wrk_post(
            f"process {i}",
            apis[i].url + "/graphql",
            PROBE,
            {"content-type": "application/json"},
            connections=32,
            duration_s=seconds,
            threads=1,
        )

    import threading

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(apis))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    many = sum(r.requests_per_s for r in results)
    return {
        "one_process_rps": round(one.requests_per_s),
        f"{len(apis)}_processes_rps": round(many),
        "ratio": round(many / one.requests_per_s, 2),
        "per_process_rps": [round(r.requests_per_s) for r in results],
        "non_2xx": one.non_2xx + sum(r.non_2xx for r in results),
    }


async def ws_close_code(url: str, ready: asyncio.Event, closed: dict[str, Any]) -> None:
    """Open a graphql-transport-ws socket, signal when acknowledged, record the close code the server sends."""
    import websockets

    async with websockets.connect(url.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send('{"type": "connection_init", "payload": {}}')
        assert "connection_ack" in await ws.recv()
        ready.set()
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            closed["code"] = exc.rcvd.code if exc.rcvd else None


async def rolling_restart(apis: list[Api], clients: int, drain_s: float) -> dict[str, Any]:
    rotation = list(range(len(apis)))
    stop = asyncio.Event()
    counts = {"ok": 0, "lost": 0}
    errors: list[str] = []
    rng = random.Random(1)

    async def client() -> None:
        limits = httpx.Limits(max_keepalive_connections=4)
        async with httpx.AsyncClient(timeout=30, limits=limits) as c:
            while not stop.is_set():
                api = apis[rng.choice(rotation)]
                try:
                    resp = await c.post(
                        api.url + "/graphql", content=PROBE, headers={"content-type": "application/json"}
                    )
                    if resp.status_code == 200 and resp.json().get("data") == {"__typename": "Query"}:
                        counts["ok"] += 1
                    else:
                        counts["lost"] += 1
                        errors.append(f"api{api.index}: HTTP {resp.status_code}")
                except httpx.HTTPError as exc:
                    counts["lost"] += 1
                    errors.append(f"api{api.index}: {type(exc).__name__}")

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    ws_codes: list[int | None] = []
    restart_s: list[float] = []
    try:
        await asyncio.sleep(1.0)
        for i, api in enumerate(apis):
            ready, closed = asyncio.Event(), {}
            ws_task = asyncio.create_task(ws_close_code(api.url, ready, closed))
            await asyncio.wait_for(ready.wait(), 10)
            rotation.remove(i)  # out of the Service's endpoints (readiness/preStop)
            await asyncio.sleep(drain_s)
            started = time.monotonic()
            code = await asyncio.to_thread(api.terminate)
            await asyncio.wait_for(ws_task, 10)
            ws_codes.append(closed.get("code"))
            if code != 0:
                errors.append(f"api{i} exited {code} on SIGTERM")
            api.start()
            await asyncio.to_thread(api.wait_ready)
            restart_s.append(round(time.monotonic() - started, 1))
            rotation.append(i)
            rotation.sort()
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return {
        "requests": counts["ok"] + counts["lost"],
        "lost": counts["lost"],
        "errors": errors[:10],
        "websocket_close_codes": ws_codes,
        "restart_s": restart_s,
    }


# --- trades across processes --------------------------------------------------------------------------------------

PLACE = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id status } errors { code } } }"
TRADES = "subscription($m: UUID!) { trades(marketId: $m) { sequence snapshot trades { price quantity takerSide } } }"


async def trades_across_processes(db_url: str, env: dict[str, str], apis: list[Api]) -> dict[str, Any]:
    from core.jwt_keys import KeyRing
    from core.settings import Settings
    from tests.trading.factories import make_market, make_trader
    from tests.trading.live import committed_sessions, graphql, subscribe

    keyring = KeyRing.from_settings(
        Settings(
            RWA_ENV="test",
            JWT_PRIVATE_KEY=env["JWT_PRIVATE_KEY"],  # type: ignore[call-arg]
            KYC_ENCRYPTION_KEY=env["KYC_ENCRYPTION_KEY"],
        )
    )
    async with committed_sessions(db_url) as sf:
        m = await make_market(sf, maker_bps=0, taker_bps=0)
        seller = await make_trader(sf, m, tokens="1000")
        buyer = await make_trader(sf, m, cash="100000")
    sell_token = keyring.issue(seller.user_id, ["INVESTOR"])[0]
    buy_token = keyring.issue(buyer.user_id, ["INVESTOR"])[0]

    def order(side: str) -> dict[str, Any]:
        return {"i": {"marketId": str(m.market_id), "side": side, "type": "LIMIT", "quantity": "3", "price": "2.50"}}

    async with (
        subscribe(apis[0].url, TRADES, {"m": str(m.market_id)}, buy_token) as sub,
        httpx.AsyncClient(timeout=30) as http,
    ):
        snapshot = (await sub.next(timeout=30))["payload"]["data"]["trades"]
        started = time.monotonic()
        placed = [
            await graphql(http, apis[1].url, PLACE, order("SELL"), sell_token),
            await graphql(http, apis[1].url, PLACE, order("BUY"), buy_token),
        ]
        message = (await sub.next(timeout=30))["payload"]["data"]["trades"]
        latency_ms = (time.monotonic() - started) * 1000
    statuses = [p["data"]["placeOrder"]["order"]["status"] for p in placed]
    received = message == {
        "sequence": 1,
        "snapshot": False,
        "trades": [{"price": "2.5", "quantity": "3", "takerSide": "BUY"}],
    }
    return {
        "subscribed_on": apis[0].port,
        "placed_on": apis[1].port,
        "snapshot_sequence": snapshot["sequence"],
        "order_statuses": statuses,
        "received": received,
        "place_to_receive_ms": round(latency_ms),
    }


# --- indexer takeover ----------------------------------------------------------------------------------------------


def _indexer(env: dict[str, str], workdir: Path, name: str, ops_port: int) -> subprocess.Popen[bytes]:
    log = open(workdir / f"{name}.log", "ab")
    return subprocess.Popen(
        [RWA, "index", "run", "--chain", "1", "--metrics-port", str(ops_port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _role(ops_port: int) -> str | None:
    try:
        body = httpx.get(f"http://127.0.0.1:{ops_port}/readyz", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    return body.get("chains", {}).get("1", {}).get("role")


async def indexer_takeover(db_url: str, workdir: Path, env: dict[str, str], traffic_s: float) -> dict[str, Any]:
    import asyncpg
    from eth_utils import to_checksum_address

    from bench.indexer_soak import check, wait_caught_up
    from chains.anvil import AnvilNode
    from chains.deploy import connect, deploy_rwa_stack, transact
    from indexer.lock import asyncpg_dsn

    e18 = 10**18
    with AnvilNode(1) as node:
        w3 = connect(node.url)
        accounts = list(await w3.eth.accounts)
        start = await w3.eth.block_number + 1
        stack = await deploy_rwa_stack(w3, accounts[0])
        agent, wallets = accounts[0], accounts[1:5]
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        for address, kind, registry in (
            (stack.token.address, "SECURITY", stack.registry.address),
            (stack.stablecoin.address, "STABLECOIN", None),
        ):
            await conn.execute(
                "INSERT INTO tokens (id, chain_id, address, kind, name, symbol, decimals, total_supply, paused, "
                "identity_registry, start_block) VALUES ($1, 1, $2, $3, 'Scale', 'SCL', 18, 0, false, $4, $5)",
                uuid.uuid4(),
                address,
                kind,
                registry,
                start,
            )
        await conn.close()
        for i, w in enumerate(wallets):
            await transact(
                stack.registry.functions.registerIdentity(w, to_checksum_address(f"0x{0x2D000 + i:040x}"), 250), agent
            )
            await transact(stack.token.functions.mint(w, 1_000 * e18), agent)
            await transact(stack.stablecoin.functions.mint(w, 10**12), agent)
        if await stack.token.functions.paused().call():
            await transact(stack.token.functions.unpause(), agent)
        ienv = {**env, "RPC_URLS_1": node.url}
        ports = [free_port(), free_port()]
        procs = [_indexer(ienv, workdir, f"indexer{i}", p) for i, p in enumerate(ports)]
        rng = random.Random(2)
        sent = 0
        try:
            deadline = time.monotonic() + 120
            while not any(_role(p) == "writer" for p in ports):
                assert all(p.poll() is None for p in procs), "an indexer exited"
                assert time.monotonic() < deadline, "no indexer became writer"
                await asyncio.sleep(0.2)
            leader = next(i for i, p in enumerate(ports) if _role(p) == "writer")
            standby = 1 - leader
            assert _role(ports[standby]) == "standby"

            async def traffic(seconds: float) -> None:
                nonlocal sent
                until = time.monotonic() + seconds
                while time.monotonic() < until:
                    a, b = rng.sample(wallets, 2)
                    await transact(stack.token.functions.transfer(b, rng.randint(1, 5) * e18), a)
                    sent += 1
                    await asyncio.sleep(0.05)

            await traffic(traffic_s / 2)
            os.killpg(procs[leader].pid, signal.SIGKILL)  # the writer dies mid-stream
            killed = time.monotonic()
            procs[leader].wait()
            load = asyncio.create_task(traffic(traffic_s / 2))  # the chain goes on while the standby takes over
            while _role(ports[standby]) != "writer":
                assert procs[standby].poll() is None, "the standby exited"
                assert time.monotonic() - killed < 60, "the standby did not take over within 60 s"
                await asyncio.sleep(0.05)
            takeover = time.monotonic() - killed
            await load

            class _Task:  # wait_caught_up watches an in-process task; here the standby process stands in for it
                def done(self) -> bool:
                    return procs[standby].poll() is not None

                def result(self) -> None:
                    raise RuntimeError("the standby exited")

            await wait_caught_up(db_url, node, _Task(), timeout=120)  # type: ignore[arg-type]
            problems = await check(db_url, node.url, stack, wallets)
            head = node.block_number()
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
                    try:
                        p.wait(20)
                    except subprocess.TimeoutExpired:
                        os.killpg(p.pid, signal.SIGKILL)
    return {
        "takeover_s": round(takeover, 2),
        "transfers": sent,
        "head": head,
        "verify_ok": not problems,
        "problems": problems[:10],
    }


# --- worker killed mid-job -----------------------------------------------------------------------------------------


class HoldingReceiver:
    """A webhook receiver whose first POST is never answered (the sender stays mid-job); later ones get 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.first = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> HoldingReceiver:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (line.split(":", 1) for line in head.decode().split("\r\n")[1:] if ":" in line)
            }
            await reader.readexactly(int(headers.get("content-length", "0")))
            entry = {
                "peer_port": writer.get_extra_info("peername")[1],
                "id": headers.get("webhook-id"),
                "answered": False,
            }
            self.requests.append(entry)
            if len(self.requests) == 1:
                self.first.set()
                await reader.read()  # hold it: answer nothing until the sender dies
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
            entry["answered"] = True
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


async def worker_killed_mid_job(db_url: str, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    import asyncpg
    import psutil

    from indexer.lock import asyncpg_dsn

    vhost = f"rwa-scale-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_rabbitmqctl, "add_vhost", vhost)
    await asyncio.to_thread(_rabbitmqctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    receiver = await HoldingReceiver().start()
    wenv = {**env, "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}
    workers = []
    for i in range(2):
        log = open(workdir / f"worker{i}.log", "ab")
        workers.append(
            subprocess.Popen(
                [RWA, "worker", "--threads", "2", "--metrics-port", "0"],
                env=wenv,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    delivery = uuid.uuid4()
    try:
        await asyncio.sleep(5)  # both workers consuming
        await conn.execute(
            "INSERT INTO webhook_deliveries (id, url, event, payload, state, attempts, created_at) "
            "VALUES ($1, $2, 'scale.test', '{}'::jsonb, 'PENDING', 0, now())",
            delivery,
            f"http://127.0.0.1:{receiver.port}/hook",
        )
        await asyncio.wait_for(receiver.first.wait(), 60)
        peer = receiver.requests[0]["peer_port"]
        owner = next(
            c.pid
            for c in psutil.net_connections("tcp")
            if c.laddr and c.laddr.port == peer and c.raddr and c.raddr.port == receiver.port and c.pid
        )
        group = os.getpgid(owner)  # the dramatiq processes of one `rwa worker` (its own session)
        victim = next(
            i
            for i, w in enumerate(workers)
            if any(os.getpgid(ch.pid) == group for ch in psutil.Process(w.pid).children())
        )
        os.killpg(group, signal.SIGKILL)  # mid-job: the POST in flight, the row locked, the message unacked
        os.kill(workers[victim].pid, signal.SIGKILL)
        killed = time.monotonic()
        while (
            state := await conn.fetchval("SELECT state FROM webhook_deliveries WHERE id = $1", delivery)
        ) != "DELIVERED":
            assert time.monotonic() - killed < 90, f"not delivered after the kill (state {state})"
            await asyncio.sleep(0.2)
        completed_after = time.monotonic() - killed
        await asyncio.sleep(3)  # anything more would be a second completion
        row = await conn.fetchrow("SELECT state, attempts FROM webhook_deliveries WHERE id = $1", delivery)
    finally:
        await conn.close()
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(w.pid, signal.SIGKILL)
            w.wait()  # the killed one's dramatiq group died with it (SIGKILL above); the other stops its own
        assert receiver.server is not None
        receiver.server.close()
        await asyncio.to_thread(_rabbitmqctl, "delete_vhost", vhost)
    answered = [r for r in receiver.requests if r["answered"]]
    return {
        "state": row["state"],
        "attempts": row["attempts"],
        "posts_received": len(receiver.requests),
        "posts_answered": len(answered),
        "same_webhook_id": len({r["id"] for r in receiver.requests}) == 1,
        "completed_after_kill_s": round(completed_after, 2),
        "exactly_once": row["state"] == "DELIVERED" and row["attempts"] == 1 and len(answered) == 1,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the reduced form CI runs (short wrk and traffic)")
    parser.add_argument("--apis", type=int, default=3)
    parser.add_argument("--skip-indexer", action="store_true")
    parser.add_argument("--skip-worker", action="store_true")
    parser.add_argument("--skip-api", action="store_true")
    args = parser.parse_args()
    seconds = 3 if args.quick else 10
    import tempfile

    report: dict[str, Any] = {"load": os.getloadavg()[0]}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rwa-scale-") as tmp, scratch_database("rwa_scale") as db_url:
        workdir = Path(tmp)
        env = base_env(db_url, workdir)
        apis = [] if args.skip_api else [Api(env, workdir, i) for i in range(args.apis)]
        try:
            for api in apis:
                api.start()
            for api in apis:
                api.wait_ready()
            if apis:
                report["throughput"] = throughput(apis, seconds)
                print(f"throughput: {report['throughput']}", flush=True)
                report["trades"] = asyncio.run(trades_across_processes(db_url, env, apis))
                print(f"trades across processes: {report['trades']}", flush=True)
                report["rolling_restart"] = asyncio.run(rolling_restart(apis, clients=16, drain_s=0.5))
                print(f"rolling restart: {report['rolling_restart']}", flush=True)
        finally:
            for api in apis:
                api.kill()
        if "trades" in report and not report["trades"]["received"]:
            failures.append("the subscriber did not receive the trade placed on another process")
        rr = report.get("rolling_restart", {"lost": 0, "websocket_close_codes": []})
        if rr["lost"]:
            failures.append(f"{rr['lost']} request(s) lost during the rolling restart")
        if any(code != 1012 for code in rr["websocket_close_codes"]):
            failures.append(f"websocket close codes {rr['websocket_close_codes']} (want 1012)")
        if not args.skip_indexer:
            report["indexer"] = asyncio.run(indexer_takeover(db_url, workdir, env, 4.0 if args.quick else 20.0))
            print(f"indexer: {report['indexer']}", flush=True)
            if not report["indexer"]["verify_ok"]:
                failures.append("verify after the takeover found mismatches")
        if not args.skip_worker:
            report["worker"] = asyncio.run(worker_killed_mid_job(db_url, workdir, env))
            print(f"worker: {report['worker']}", flush=True)
            if not report["worker"]["exactly_once"]:
                failures.append("the job killed mid-way did not complete exactly once")
    report["load_after"] = os.getloadavg()[0]
    report["failures"] = failures
    print(json.dumps(report))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
