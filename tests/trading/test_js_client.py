"""The reference JS client (npm graphql-ws, installed into a temp dir at test time) subscribes to `trades` on a
real API process and receives a trade placed over HTTP."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from core.jwt_keys import KeyRing
from tests.trading.factories import make_market, make_trader
from tests.trading.live import api_servers, committed_sessions, graphql

SCRIPT = Path(__file__).with_name("graphql_ws_client.mjs")
PLACE = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { status } }"


@pytest.fixture(scope="module")
def node_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed for the reference client test"
    workdir = tmp_path_factory.mktemp("graphql-ws-client")
    (workdir / "package.json").write_text('{"name": "gql-ws-check", "private": true, "type": "module"}')
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent", "graphql-ws@6", "ws@8", "graphql@16"],
                   cwd=workdir, check=True, timeout=180, capture_output=True)
    shutil.copy(SCRIPT, workdir / SCRIPT.name)
    return workdir / SCRIPT.name


def order(market_id: str, side: str) -> dict:  # type: ignore[type-arg]
    return {"i": {"marketId": market_id, "side": side, "type": "LIMIT", "quantity": "2", "price": "1.50"}}


async def test_graphql_ws_reference_client_receives_a_trade(node_client, database_url, redis_url, settings,
                                                            tmp_path):  # type: ignore[no-untyped-def]
    keyring = KeyRing.from_settings(settings)
    async with committed_sessions(database_url) as sf:
        m = await make_market(sf, maker_bps=0, taker_bps=0)
        seller = await make_trader(sf, m, tokens="1000")
        buyer = await make_trader(sf, m, cash="100000")
    seller_token = keyring.issue(seller.user_id, ["INVESTOR"])[0]
    buyer_token = keyring.issue(buyer.user_id, ["INVESTOR"])[0]
    market_id = str(m.market_id)
    with api_servers(database_url, redis_url, n=1, data_dir=str(tmp_path)) as servers:
        url = servers.urls[0]
        proc = await asyncio.create_subprocess_exec(
            "node", str(node_client), url.replace("http://", "ws://") + "/graphql", buyer_token, market_id,
            cwd=node_client.parent, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))  # type: ignore[union-attr]
            assert line == {"event": "connected"}, line
            event = None
            deadline = time.monotonic() + 30
            async with httpx.AsyncClient(timeout=30) as http:
                while event is None and time.monotonic() < deadline:
                    await graphql(http, url, PLACE, order(market_id, "SELL"), seller_token)
                    done = await graphql(http, url, PLACE, order(market_id, "BUY"), buyer_token)
                    assert done["data"]["placeOrder"]["status"] == "FILLED"
                    try:
                        event = json.loads(await asyncio.wait_for(proc.stdout.readline(), 2))  # type: ignore[union-attr]
                    except asyncio.TimeoutError:
                        continue
            assert event is not None and event["event"] == "next", event
            trade = event["value"]["data"]["trades"]
            assert trade["marketId"] == market_id and trade["price"] == "1.5" and trade["quantity"] == "2"
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
