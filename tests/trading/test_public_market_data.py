"""Market data is public, as exchanges publish it: markets, order books, trades, tickers and candles answer callers
without a login (queries and subscriptions), each anonymous client IP within PUBLIC_RATE_PER_MINUTE; with
MARKET_DATA_REQUIRES_LOGIN they need one. Subscriptions are never run over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.trading.live import Servers, api_servers, graphql, subscribe
from tests.trading.test_market_data import cross, setup_market

PUBLIC_QUERY = """query($m: UUID!) { markets { id } orderBook(marketId: $m) { sequence }
  trades(marketId: $m, first: 5) { edges { node { sequence price } } } ticker(marketId: $m) { last sequence }
  candles(marketId: $m, interval: ONE_MINUTE) { close } }"""
RATE = 12  # anonymous reads per minute per IP in these servers (each root field counts)


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    return module_database_url


@pytest.fixture(scope="module")
def public(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with api_servers(
        database_url,
        redis_url,
        n=1,
        data_dir=str(tmp_path_factory.mktemp("pub")),
        extra_env={"PUBLIC_RATE_PER_MINUTE": str(RATE)},
    ) as s:
        yield s


@pytest.fixture(scope="module")
def login_only(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with api_servers(
        database_url,
        redis_url,
        n=1,
        data_dir=str(tmp_path_factory.mktemp("priv")),
        extra_env={"MARKET_DATA_REQUIRES_LOGIN": "true"},
    ) as s:
        yield s


async def test_anonymous_caller_reads_market_data_within_its_rate(public, database_url, settings):  # type: ignore[no-untyped-def]
    m, seller, buyer, _ = await setup_market(database_url, settings)
    (url,) = public.urls
    async with httpx.AsyncClient(timeout=30) as http:
        await cross(http, url, m, seller, buyer, price="2.00", qty="1")  # signed in: not counted
        anon = await graphql(http, url, PUBLIC_QUERY, {"m": str(m.market_id)})
        assert "errors" not in anon, anon
        data = anon["data"]
        assert str(m.market_id) in {x["id"] for x in data["markets"]}
        assert data["trades"]["edges"] == [{"node": {"sequence": 1, "price": "2"}}]
        assert data["ticker"]["last"] == "2" and data["candles"][-1]["close"] == "2"
        # 5 root fields counted; the rest of the minute's allowance, then RATE_LIMITED with retryAfter
        used = 5
        while used < RATE:
            ok = await graphql(
                http, url, "query($m: UUID!) { orderBook(marketId: $m) { sequence } }", {"m": str(m.market_id)}
            )
            assert "errors" not in ok, ok
            used += 1
        limited = await graphql(http, url, "{ markets { id } }")
        error = limited["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED" and error["extensions"]["retryAfter"] >= 1, limited
        # a signed-in caller from the same IP is not limited by the anonymous allowance
        signed = await graphql(http, url, "{ markets { id } }", None, buyer)
        assert "errors" not in signed, signed


async def test_anonymous_subscriber_gets_the_trades_snapshot(public, database_url, redis_url, settings):  # type: ignore[no-untyped-def]
    m, seller, buyer, _ = await setup_market(database_url, settings)
    (url,) = public.urls
    async with httpx.AsyncClient(timeout=30) as http:
        await cross(http, url, m, seller, buyer, price="3.00", qty="2")
    query = "subscription($m: UUID!) { trades(marketId: $m) { sequence snapshot trades { price quantity } } }"
    await _fresh_allowance(public, redis_url)
    async with subscribe(url, query, {"m": str(m.market_id)}) as sub:
        first = await sub.next()
        assert first["type"] == "next", first
        assert first["payload"]["data"]["trades"] == {
            "sequence": 1,
            "snapshot": True,
            "trades": [{"price": "3", "quantity": "2"}],
        }


async def _fresh_allowance(servers: Servers, redis_url: str) -> None:
    """The previous test spent this IP's anonymous allowance for the minute: drop its counter (under the servers'
    Redis prefix) instead of waiting for the window to end."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        async for key in redis.scan_iter(match=f"{servers.prefix}rl:public:*"):
            await redis.delete(key)
    finally:
        await redis.aclose()


async def test_setting_requires_a_login_for_market_data(login_only, database_url, settings):  # type: ignore[no-untyped-def]
    m, _, buyer, _ = await setup_market(database_url, settings)
    (url,) = login_only.urls
    async with httpx.AsyncClient(timeout=30) as http:
        anon = await graphql(http, url, "query($m: UUID!) { ticker(marketId: $m) { last } }", {"m": str(m.market_id)})
        assert anon["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", anon
        signed = await graphql(
            http, url, "query($m: UUID!) { ticker(marketId: $m) { last } }", {"m": str(m.market_id)}, buyer
        )
        assert signed["data"]["ticker"]["last"] is None, signed
    async with subscribe(
        url, "subscription($m: UUID!) { trades(marketId: $m) { sequence } }", {"m": str(m.market_id)}
    ) as sub:
        refused = await sub.next()
        assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_subscriptions_over_http_are_refused(public, database_url, settings):  # type: ignore[no-untyped-def]
    """A subscription POSTed (or sent by GET) is refused with a typed 400, not executed (it was INTERNAL)."""
    (url,) = public.urls
    async with httpx.AsyncClient(timeout=30) as http:
        for method in ("POST", "GET"):
            query = "subscription { myOrders { id } }"
            if method == "POST":
                resp = await http.post(url + "/graphql", json={"query": query})
            else:
                resp = await http.get(url + "/graphql", params={"query": query})
            assert resp.status_code in (400, 405), (method, resp.text)
            assert resp.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", (method, resp.text)
