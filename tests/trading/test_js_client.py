"""The reference JS client (npm graphql-ws, pinned in package.json and installed by scripts/setup.sh) subscribes to `trades` on a
real API process and receives a trade placed over HTTP."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from core.jwt_keys import KeyRing
from tests.trading.factories import make_market, make_trader
from tests.trading.live import api_servers, committed_sessions, graphql

SCRIPT = Path(__file__).with_name("graphql_ws_client.mjs")
PLACE = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { status } errors { code } } }"


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    """The API processes and sessions here commit: their rows stay in this module's own database."""
    return module_database_url


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The client script runs next to the repository's node_modules (graphql-ws, ws, graphql from the lockfile)."""
    assert shutil.which("node"), "node is needed for the reference client test"
    for package in ("graphql-ws", "ws", "graphql"):
        assert (REPO / "node_modules" / package).is_dir(), f"{package} missing: run scripts/setup.sh (npm ci)"
    return SCRIPT


def order(market_id: str, side: str) -> dict:  # type: ignore[type-arg]
    return {"i": {"marketId": market_id, "side": side, "type": "LIMIT", "quantity": "2", "price": "1.50"}}


async def test_graphql_ws_reference_client_receives_a_trade(node_client, database_url, redis_url, settings, tmp_path):  # type: ignore[no-untyped-def]
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
            "node",
            str(node_client),
            url.replace("http://", "ws://") + "/graphql",
            buyer_token,
            market_id,
            cwd=node_client.parent,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))  # type: ignore[union-attr]
            assert line == {"event": "connected"}, line
            event = None
            deadline = time.monotonic() + 30
            async with httpx.AsyncClient(timeout=30) as http:
                while event is None and time.monotonic() < deadline:
                    await graphql(http, url, PLACE, order(market_id, "SELL"), seller_token)
                    done = await graphql(http, url, PLACE, order(market_id, "BUY"), buyer_token)
                    assert done["data"]["placeOrder"]["order"]["status"] == "FILLED"
                    try:
                        event = json.loads(await asyncio.wait_for(proc.stdout.readline(), 2))  # type: ignore[union-attr]
                    except TimeoutError:
                        continue
            assert event is not None and event["event"] == "next", event
            update = event["value"]["data"]["trades"]
            trade = update["trades"][-1]
            assert update["marketId"] == market_id and update["snapshot"] is False, update
            assert trade["price"] == "1.5" and trade["quantity"] == "2" and trade["sequence"] == update["sequence"]
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
