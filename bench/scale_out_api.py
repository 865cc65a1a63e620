"""bench/scale_out.py's scenarios over the API processes: req/s of N processes vs one, a trade placed on one
reaching a subscriber on another, and a rolling restart under load (lost requests, websocket close codes)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx

from bench.harness import wrk_post
from bench.scale_out_cluster import PROBE, Api


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
