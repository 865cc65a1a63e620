"""Risk controls and market makers over GraphQL (in-process app): ADMIN configures, reads, kills and reopens a
market, designates a maker and reads its report; each mutation is audited; bad input is a typed error that changes
nothing; the asset's valuation gives the band's reference before any trade."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import func, select, update

from models.assets import Asset
from models.identity import AuditLog
from models.tokens import Token
from models.trading import MarketRiskLimits
from tests.trading.factories import make_market, make_trader

LIMITS = (
    "marketId priceBandBps referencePrice maxOrderQuantity maxOrderNotional dailyNotionalLimit maxPosition "
    "breakerMoveBps breakerWindowS breakerHaltS haltedUntil haltReason"
)
ERRORS = "errors { code field message }"
SET = (
    f"mutation($i: SetMarketRiskLimitsInput!) {{ setMarketRiskLimits(input: $i) "
    f"{{ marketRiskLimits {{ {LIMITS} }} {ERRORS} }} }}"
)
PLACE = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id status reason } errors { code } } }"
MAKER = (
    "mutation($m: UUID!, $u: UUID!, $mk: Int!) { setMarketMaker(input: {marketId: $m, userId: $u, makerFeeBps: $mk, "
    'takerFeeBps: 10, maxSpreadBps: 100, minQuoteSize: "5", minUptime: "0.9"}) '
    f"{{ marketMaker {{ userId makerFeeBps active }} {ERRORS} }} }}"
)


async def audits(session_factory, action: str) -> int:  # type: ignore[no-untyped-def]
    async with session_factory() as s:
        return await s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == action))  # type: ignore[return-value]


async def test_limits_kill_switch_and_reopen(gql, make_user, session_factory, services):  # type: ignore[no-untyped-def]
    admin = await make_user(roles=["ADMIN"])
    m = await make_market(session_factory)
    investor = await make_trader(session_factory, m, cash="1000")
    investor_token = services.keyring.issue(investor.user_id, ["INVESTOR"])[0]
    async with session_factory() as s:  # valuation 1,000,000 USD over 100,000 tokens: 10 per token
        token = await s.get(Token, m.token_id)
        token.total_supply = 100_000 * 10**m.decimals  # type: ignore[union-attr]
        await s.execute(
            update(Asset)
            .where(Asset.id == token.asset_id)
            .values(  # type: ignore[union-attr]
                latest_valuation_amount=Decimal(1_000_000),
                latest_valuation_currency="USD",
                latest_valuation_as_of=date(2026, 1, 1),
            )
        )
        await s.commit()
    bad = await gql(SET, {"i": {"marketId": str(m.market_id), "breakerMoveBps": 100}}, token=admin.token)
    assert gql.error_code(bad) == "BAD_USER_INPUT"
    assert bad["data"]["setMarketRiskLimits"]["errors"][0]["field"] == ["input", "breakerMoveBps"]
    async with session_factory() as s:
        assert await s.get(MarketRiskLimits, m.market_id) is None
    ok = await gql(
        SET,
        {
            "i": {
                "marketId": str(m.market_id),
                "priceBandBps": 1000,
                "maxOrderQuantity": "100",
                "breakerMoveBps": 500,
                "breakerWindowS": 60,
                "breakerHaltS": 120,
            },
        },
        token=admin.token,
    )
    limits = gql.payload(ok, "setMarketRiskLimits", "marketRiskLimits")
    assert limits["referencePrice"] == "10" and limits["priceBandBps"] == 1000 and limits["maxPosition"] is None
    assert await audits(session_factory, "market.risk_limits") == 1
    outside = await gql(
        PLACE,
        {"i": {"marketId": str(m.market_id), "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "11.5"}},
        token=investor_token,
    )
    assert outside["data"]["placeOrder"]["order"] == {
        "id": outside["data"]["placeOrder"]["order"]["id"],
        "status": "REJECTED",
        "reason": "PRICE_OUTSIDE_BAND",
    }
    resting = await gql(
        PLACE,
        {"i": {"marketId": str(m.market_id), "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "10"}},
        token=investor_token,
    )
    assert resting["data"]["placeOrder"]["order"]["status"] == "NEW"
    kill = (
        'mutation($m: UUID!) { killMarket(input: {marketId: $m, reason: "fat finger"}) '
        f"{{ killSwitchResult {{ status canceledOrders }} {ERRORS} }} }}"
    )
    killed = await gql(kill, {"m": str(m.market_id)}, token=admin.token)
    assert gql.payload(killed, "killMarket", "killSwitchResult") == {"status": "HALTED", "canceledOrders": 1}
    read = await gql(
        f"query($m: UUID!) {{ marketRiskLimits(marketId: $m) {{ {LIMITS} }} }}",
        {"m": str(m.market_id)},
        token=admin.token,
    )
    assert read["data"]["marketRiskLimits"]["haltReason"] == "KILL_SWITCH"
    reopen = f"mutation($m: UUID!) {{ setMarketStatus(input: {{marketId: $m, status: OPEN}}) {{ market {{ status }} {ERRORS} }} }}"
    reopened = await gql(reopen, {"m": str(m.market_id)}, token=admin.token)
    assert gql.payload(reopened, "setMarketStatus", "market")["status"] == "OPEN"
    read = await gql(
        f"query($m: UUID!) {{ marketRiskLimits(marketId: $m) {{ {LIMITS} }} }}",
        {"m": str(m.market_id)},
        token=admin.token,
    )
    assert read["data"]["marketRiskLimits"]["haltReason"] is None
    assert await audits(session_factory, "market.kill") == 1
    missing = await gql(kill, {"m": "00000000-0000-0000-0000-000000000000"}, token=admin.token)
    assert gql.error_code(missing) == "NOT_FOUND" and missing["data"]["killMarket"]["killSwitchResult"] is None
    assert missing["data"]["killMarket"]["errors"][0]["field"] == ["input", "marketId"]
    denied = await gql(kill, {"m": str(m.market_id)}, token=investor_token)
    assert gql.error_code(denied) == "FORBIDDEN"


async def test_market_maker_designation_and_report(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    admin = await make_user(roles=["ADMIN"])
    m = await make_market(session_factory, maker_bps=10, taker_bps=20)
    maker = await make_trader(session_factory, m, cash="1000", tokens="100")
    bad = await gql(MAKER, {"m": str(m.market_id), "u": str(maker.user_id), "mk": 30}, token=admin.token)
    assert gql.error_code(bad) == "BAD_USER_INPUT"
    assert bad["data"]["setMarketMaker"]["errors"][0]["field"] == ["input", "makerFeeBps"]
    ok = await gql(MAKER, {"m": str(m.market_id), "u": str(maker.user_id), "mk": -2}, token=admin.token)
    assert gql.payload(ok, "setMarketMaker", "marketMaker") == {
        "userId": str(maker.user_id),
        "makerFeeBps": -2,
        "active": True,
    }
    report = await gql(
        "query($m: UUID!) { marketMakerReport(marketId: $m) { userId samples uptime "
        "meetsObligations makerFeeBps makerVolume } }",
        {"m": str(m.market_id)},
        token=admin.token,
    )
    assert report["data"]["marketMakerReport"] == [
        {
            "userId": str(maker.user_id),
            "samples": 0,
            "uptime": None,
            "meetsObligations": False,
            "makerFeeBps": -2,
            "makerVolume": "0",
        }
    ]
    bad_window = await gql(
        'query($m: UUID!) { marketMakerReport(marketId: $m, from: "2026-01-02T00:00:00Z", '
        'to: "2026-01-01T00:00:00Z") { userId } }',
        {"m": str(m.market_id)},
        token=admin.token,
    )
    assert gql.error_code(bad_window) == "BAD_USER_INPUT"
    removed = await gql(
        "mutation($m: UUID!, $u: UUID!) { removeMarketMaker(input: {marketId: $m, userId: $u}) "
        "{ marketMaker { active } errors { code } } }",
        {"m": str(m.market_id), "u": str(maker.user_id)},
        token=admin.token,
    )
    assert gql.payload(removed, "removeMarketMaker", "marketMaker") == {"active": False}
    assert await audits(session_factory, "market.maker_set") == 1
    assert await audits(session_factory, "market.maker_removed") == 1


async def test_limits_with_more_decimals_than_stored_are_refused(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    """Found by an outside sweep of rwa serve: a limit of 1E-28 (or 1.0000000000000000001) passed the positive check
    and Postgres rounded it into the NUMERIC(38, 18) column: stored and enforced as 0 (or 1), unlike what the ADMIN
    set and what the audit row says."""
    admin = await make_user(roles=["ADMIN"])
    m = await make_market(session_factory)
    for field in ("referencePrice", "maxOrderQuantity", "maxOrderNotional", "dailyNotionalLimit", "maxPosition"):
        for value in ("1E-28", "1.0000000000000000001"):
            bad = await gql(SET, {"i": {"marketId": str(m.market_id), field: value}}, token=admin.token)
            assert gql.error_code(bad) == "BAD_USER_INPUT", bad
            assert bad["data"]["setMarketRiskLimits"]["errors"][0]["field"] == ["input", field], bad
    async with session_factory() as s:
        assert await s.get(MarketRiskLimits, m.market_id) is None
    assert await audits(session_factory, "market.risk_limits") == 0
    ok = await gql(
        SET, {"i": {"marketId": str(m.market_id), "maxOrderQuantity": "0.000000000000000001000"}}, token=admin.token
    )
    assert gql.payload(ok, "setMarketRiskLimits", "marketRiskLimits")["maxOrderQuantity"] == "0.000000000000000001"
    maker = await make_trader(session_factory, m, cash="1", tokens="1")
    designate = (
        "mutation($m: UUID!, $u: UUID!, $q: Decimal!) { setMarketMaker(input: {marketId: $m, userId: $u, "
        'makerFeeBps: 0, takerFeeBps: 0, maxSpreadBps: 100, minQuoteSize: $q, minUptime: "0.9"}) '
        f"{{ marketMaker {{ userId }} {ERRORS} }} }}"
    )
    for size in ("1E-28", "5.0000000000000000001"):  # stored as 0 and 5
        bad = await gql(designate, {"m": str(m.market_id), "u": str(maker.user_id), "q": size}, token=admin.token)
        assert bad["data"]["setMarketMaker"]["errors"][0]["field"] == ["input", "minQuoteSize"], bad
    assert await audits(session_factory, "market.maker_set") == 0
