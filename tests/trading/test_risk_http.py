"""Risk limits hold across API processes: a burst of placeOrder over HTTP, spread over two uvicorn processes, from
one investor against a daily notional limit and a maximum position (the advisory locks are per database, not per
process)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from core.jwt_keys import KeyRing
from resolvers import ledger
from resolvers.trading import risk_admin
from tests.trading.factories import make_market, make_trader, make_user
from tests.trading.live import api_servers, committed_sessions, graphql

PLACE = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id status reason } errors { code } } }"


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    return module_database_url


async def test_limits_hold_across_two_api_processes(database_url, redis_url, settings, tmp_path):  # type: ignore[no-untyped-def]
    keyring = KeyRing.from_settings(settings)
    async with committed_sessions(database_url) as sf:
        daily = await make_market(sf)
        position = await make_market(sf)
        admin = await make_user(sf, ["ADMIN"])
        investor = await make_trader(sf, daily, cash="100000")
        await make_trader(sf, position, user_id=investor.user_id, kyc=None)
        async with sf() as s:
            await risk_admin.set_limits(
                s, admin, daily.market_id, risk_admin.LimitsSpec(daily_notional_limit=Decimal("500")), None
            )
        async with sf() as s:
            await risk_admin.set_limits(
                s, admin, position.market_id, risk_admin.LimitsSpec(max_position=Decimal("7")), None
            )
        async with sf() as s:
            await ledger.credit_deposit(s, investor.user_id, Decimal("100000"), position.quote, reference="risk-http")
            await s.commit()
    token = keyring.issue(investor.user_id, ["INVESTOR"])[0]

    def order(m, i):  # type: ignore[no-untyped-def]
        return {
            "i": {
                "marketId": str(m.market_id),
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "1",
                "price": "100",
                "clientOrderId": f"{m.market_id.hex[:8]}-{i}",
            }
        }

    with api_servers(database_url, redis_url, n=2, data_dir=str(tmp_path)) as servers:
        async with httpx.AsyncClient(timeout=60) as http:
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        graphql(http, servers.urls[i % 2], PLACE, order(m, i), token)
                        for m in (daily, position)
                        for i in range(12)
                    )
                ),
                timeout=120,
            )
    assert not [r for r in results if r.get("errors") or r["data"]["placeOrder"]["errors"]], results[:3]
    placed = [r["data"]["placeOrder"]["order"] for r in results]
    by_market = {daily.market_id: placed[:12], position.market_id: placed[12:]}
    assert sum(o["status"] == "NEW" for o in by_market[daily.market_id]) == 5  # 5 x 100 = the daily limit
    assert {o["reason"] for o in by_market[daily.market_id] if o["status"] == "REJECTED"} == {
        "DAILY_NOTIONAL_LIMIT_EXCEEDED"
    }
    assert sum(o["status"] == "NEW" for o in by_market[position.market_id]) == 7  # open buys count as position
    assert {o["reason"] for o in by_market[position.market_id] if o["status"] == "REJECTED"} == {
        "MAX_POSITION_EXCEEDED"
    }
