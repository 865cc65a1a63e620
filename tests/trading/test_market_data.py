"""Market data over graphql-transport-ws against two real API processes: a subscriber on one process sees what
is traded through the other (Redis pub/sub); order book snapshot then consecutive deltas; ticker; candles;
myOrders only shows the caller's orders and the socket closes when its token expires."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import websockets

from core.jwt_keys import KeyRing
from tests.trading.factories import make_market, make_trader
from tests.trading.live import Servers, api_servers, committed_sessions, graphql, subscribe

PLACE = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id status } errors { code } } }"


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    """The API processes and sessions here commit: their rows stay in this module's own database."""
    return module_database_url


@pytest.fixture(scope="module")
def servers(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with api_servers(database_url, redis_url, n=2, data_dir=str(tmp_path_factory.mktemp("md"))) as s:
        yield s


async def setup_market(database_url, settings):  # type: ignore[no-untyped-def]
    keyring = KeyRing.from_settings(settings)
    async with committed_sessions(database_url) as sf:
        m = await make_market(sf, maker_bps=0, taker_bps=0)
        seller = await make_trader(sf, m, tokens="1000")
        buyer = await make_trader(sf, m, cash="100000")
    return m, keyring.issue(seller.user_id, ["INVESTOR"])[0], keyring.issue(buyer.user_id, ["INVESTOR"])[0], keyring


def order(m, side: str, qty: str, price: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {"i": {"marketId": str(m.market_id), "side": side, "type": "LIMIT", "quantity": qty, "price": price}}


async def cross(http, url, m, seller, buyer, price="2.50", qty="3"):  # type: ignore[no-untyped-def]
    a = await graphql(http, url, PLACE, order(m, "SELL", qty, price), seller)
    b = await graphql(http, url, PLACE, order(m, "BUY", qty, price), buyer)
    assert a["data"]["placeOrder"]["order"]["status"] == "NEW", a
    assert b["data"]["placeOrder"]["order"]["status"] == "FILLED", b


async def test_trade_on_one_process_reaches_subscribers_on_the_other(servers, database_url, settings):  # type: ignore[no-untyped-def]
    m, seller, buyer, _ = await setup_market(database_url, settings)
    a, b = servers.urls
    query = (
        "subscription($m: UUID!) { trades(marketId: $m) { marketId sequence snapshot "
        "trades { price quantity takerSide sequence } } }"
    )
    async with (
        subscribe(a, query, {"m": str(m.market_id)}, seller) as s1,
        subscribe(a, query, {"m": str(m.market_id)}, buyer) as s2,
        httpx.AsyncClient(timeout=30) as http,
    ):
        for sub in (s1, s2):  # both start with the market's (empty) snapshot at sequence 0
            snap = (await sub.next())["payload"]["data"]["trades"]
            assert snap == {"marketId": str(m.market_id), "sequence": 0, "snapshot": True, "trades": []}
        await cross(http, b, m, seller, buyer)
        msg = (await s1.next())["payload"]["data"]["trades"]
        assert msg == {
            "marketId": str(m.market_id),
            "sequence": 1,
            "snapshot": False,
            "trades": [{"price": "2.5", "quantity": "3", "takerSide": "BUY", "sequence": 1}],
        }
        assert (await s2.next())["payload"]["data"]["trades"] == msg  # the same event, same sequence
        await cross(http, b, m, seller, buyer, price="2.60", qty="1")
        assert (await s1.next())["payload"]["data"]["trades"]["sequence"] == 2  # consecutive per market


async def test_trades_stream_starts_with_the_latest_trades(servers, database_url, settings):  # type: ignore[no-untyped-def]
    """A subscriber that arrives after trades sees them (oldest first, with their sequences), then the next one
    with the following sequence; trades of another market never move this market's sequence."""
    m, seller, buyer, _ = await setup_market(database_url, settings)
    other, o_seller, o_buyer, _ = await setup_market(database_url, settings)
    a, b = servers.urls
    query = (
        "subscription($m: UUID!, $n: Int!) { trades(marketId: $m, last: $n) { sequence snapshot "
        "trades { price sequence } } }"
    )
    async with httpx.AsyncClient(timeout=30) as http:
        for price in ("1.00", "2.00", "3.00"):
            await cross(http, b, m, seller, buyer, price=price, qty="1")
            await cross(http, b, other, o_seller, o_buyer, price=price, qty="1")
        async with subscribe(a, query, {"m": str(m.market_id), "n": 2}, buyer) as sub:
            snap = (await sub.next())["payload"]["data"]["trades"]
            assert snap == {
                "sequence": 3,
                "snapshot": True,
                "trades": [{"price": "2", "sequence": 2}, {"price": "3", "sequence": 3}],
            }
            await cross(http, b, other, o_seller, o_buyer, price="9.00", qty="1")
            await cross(http, b, m, seller, buyer, price="4.00", qty="1")
            assert (await sub.next())["payload"]["data"]["trades"] == {
                "sequence": 4,
                "snapshot": False,
                "trades": [{"price": "4", "sequence": 4}],
            }
        page = await graphql(
            http,
            a,
            "query($m: UUID!) { trades(marketId: $m, first: 2) { edges { node { sequence price } } } }",
            {"m": str(m.market_id)},
        )
        assert [e["node"] for e in page["data"]["trades"]["edges"]] == [
            {"sequence": 4, "price": "4"},
            {"sequence": 3, "price": "3"},
        ]
        async with subscribe(a, query, {"m": str(m.market_id), "n": 201}) as too_many:
            refused = await too_many.next()
            errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
            assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", refused


async def test_order_book_snapshot_then_consecutive_deltas(servers, database_url, settings):  # type: ignore[no-untyped-def]
    m, seller, buyer, _ = await setup_market(database_url, settings)
    a, b = servers.urls
    async with httpx.AsyncClient(timeout=30) as http:
        await graphql(http, b, PLACE, order(m, "BUY", "5", "1.00"), buyer)
        query = (
            "subscription($m: UUID!) { orderBook(marketId: $m, depth: 5) { sequence snapshot "
            "bids { price quantity } asks { price quantity } } }"
        )
        async with subscribe(a, query, {"m": str(m.market_id)}, buyer) as sub:
            first = (await sub.next())["payload"]["data"]["orderBook"]
            assert first["snapshot"] is True and first["bids"] == [{"price": "1", "quantity": "5"}]
            seq = first["sequence"]
            await graphql(http, b, PLACE, order(m, "SELL", "7", "3.00"), seller)
            delta = (await sub.next())["payload"]["data"]["orderBook"]
            assert delta == {
                "sequence": seq + 1,
                "snapshot": False,
                "bids": [],
                "asks": [{"price": "3", "quantity": "7"}],
            }
            await graphql(http, b, PLACE, order(m, "BUY", "2", "3.00"), buyer)  # trades 2 at 3.00
            delta = (await sub.next())["payload"]["data"]["orderBook"]
            assert delta["sequence"] == seq + 2 and delta["asks"] == [{"price": "3", "quantity": "5"}]
        # a late joiner through the other process starts from a snapshot at the current sequence
        async with subscribe(b, query, {"m": str(m.market_id)}, seller) as late:
            snap = (await late.next())["payload"]["data"]["orderBook"]
            assert snap["snapshot"] and snap["sequence"] == seq + 2
            assert snap["asks"] == [{"price": "3", "quantity": "5"}]


async def test_ticker_and_candles_follow_trades(servers, database_url, settings):  # type: ignore[no-untyped-def]
    m, seller, buyer, _ = await setup_market(database_url, settings)
    a, b = servers.urls
    tq = "subscription($m: UUID!) { ticker(marketId: $m) { last bestBid bestAsk volume24h high24h low24h change24h } }"
    cq = "subscription($m: UUID!) { candles(marketId: $m, interval: ONE_MINUTE) { open close volume tradeCount } }"
    async with (
        subscribe(a, tq, {"m": str(m.market_id)}, buyer) as ticker,
        subscribe(a, cq, {"m": str(m.market_id)}, buyer) as candles,
        httpx.AsyncClient(timeout=30) as http,
    ):
        first = (await ticker.next())["payload"]["data"]["ticker"]
        assert first["last"] is None and first["volume24h"] == "0"
        await asyncio.sleep(0.3)  # a market that never traded has no candle yet; let its listener start
        await cross(http, b, m, seller, buyer, price="2.00", qty="1")
        await cross(http, b, m, seller, buyer, price="4.00", qty="1")
        deadline = time.monotonic() + 10
        last: dict = {}  # type: ignore[type-arg]
        while last.get("last") != "4" and time.monotonic() < deadline:
            last = (await ticker.next())["payload"]["data"]["ticker"]
        assert last == {
            "last": "4",
            "bestBid": None,
            "bestAsk": None,
            "volume24h": "2",
            "high24h": "4",
            "low24h": "2",
            "change24h": "2",
        }
        candle: dict = {}  # type: ignore[type-arg]
        while candle.get("tradeCount") != 2 and time.monotonic() < deadline:
            candle = (await candles.next())["payload"]["data"]["candles"]
        assert candle == {"open": "2", "close": "4", "volume": "2", "tradeCount": 2}
        # subscribers arriving now get the current state at once: on this process they join the shared streams
        # above, on the other they start new ones
        for url in (a, b):
            async with (
                subscribe(url, tq, {"m": str(m.market_id)}) as late_ticker,
                subscribe(url, cq, {"m": str(m.market_id)}) as late_candles,
            ):
                assert (await late_ticker.next(timeout=15))["payload"]["data"]["ticker"]["last"] == "4"
                assert (await late_candles.next(timeout=15))["payload"]["data"]["candles"] in (
                    {"open": "2", "close": "4", "volume": "2", "tradeCount": 2},
                    {"open": "4", "close": "4", "volume": "0", "tradeCount": 0},
                )  # the minute turned: flat at the last


async def test_my_orders_is_personal_and_closes_when_the_token_expires(servers, database_url, settings):  # type: ignore[no-untyped-def]
    m, seller, buyer, keyring = await setup_market(database_url, settings)
    a, b = servers.urls
    query = "subscription { myOrders { id status side quantity } }"
    async with subscribe(a, query, {}, buyer) as mine, httpx.AsyncClient(timeout=30) as http:
        msg = None
        for _ in range(10):
            await graphql(http, b, PLACE, order(m, "SELL", "1", "9.00"), seller)  # not the subscriber's
            await graphql(http, b, PLACE, order(m, "BUY", "1", "1.00"), buyer)
            try:
                msg = await mine.next(timeout=2)
                break
            except TimeoutError:
                continue
        assert msg is not None
        update = msg["payload"]["data"]["myOrders"]
        assert update["side"] == "BUY" and update["status"] == "NEW", update

    # a token that expires in 2 s: the server closes the socket with 4401
    short, _ = keyring.issue(uuid.uuid4(), ["INVESTOR"], now=int(time.time()) - settings.access_token_ttl_s + 2)
    started = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with subscribe(a, query, {}, short) as sub:
            await sub.next(timeout=15)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert time.monotonic() - started < 10
