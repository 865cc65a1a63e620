"""platformKpis: the numbers of a seeded platform, the snapshot a poll reads (and when it recomputes), who may poll,
and the worker's job and schedule."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from core.redis import Keys
from models.assets import Asset, AssetStatus, AssetType
from models.payments import Payment, PaymentMethod, PaymentState
from models.trading import OrderType, Side
from resolvers.reports import kpis
from resolvers.trading.orders import OrderRequest, place_order
from resolvers.viewer import Viewer
from tests.trading.factories import make_market, make_trader

Q = """{ platformKpis {
  computedAt ageSeconds computeMs
  assetsByStatus { status count }
  tokenizedValue { currency amount assets }
  tradingVolume { window currency volume trades fees }
  feesEarned { currency amount }
  paymentsByState { state currency count amount }
} }"""


@pytest.fixture
async def world(session_factory, session, make_user):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, maker_bps=10, taker_bps=20, quote="USDK")  # one ACTIVE asset (value 0)
    seller = await make_trader(session_factory, m, tokens="100")
    buyer = await make_trader(session_factory, m, cash="10000")
    order = lambda side, qty, price: OrderRequest(m.market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price))  # noqa: E731
    await place_order(session, seller.user_id, order(Side.SELL, "30", "10"))
    for _ in range(3):  # three trades of 10 at 10: notional 100, fees 0.1 + 0.2 each
        await place_order(session, buyer.user_id, order(Side.BUY, "10", "10"))
    await session.commit()
    now = datetime.now(UTC)
    ages = [timedelta(hours=1), timedelta(days=3), timedelta(days=20)]
    ids = [r[0] for r in (await session.execute(text("SELECT id FROM trades ORDER BY seq"))).all()]
    for trade_id, age in zip(ids, ages):
        await session.execute(
            text("UPDATE trades SET created_at = :t WHERE id = :id"), {"t": now - age, "id": trade_id}
        )
    issuer = await make_user(roles=["ISSUER"])
    async with session_factory() as s:
        for status, amount, currency in (
            (AssetStatus.ACTIVE, "1500000", "EUR"),
            (AssetStatus.SUSPENDED, "500000", "EUR"),
            (AssetStatus.REDEEMING, "250", "USD"),
            (AssetStatus.DRAFT, "999", "EUR"),
            (AssetStatus.RETIRED, "777", "EUR"),
        ):
            s.add(
                Asset(
                    id=uuid.uuid4(),
                    issuer_id=issuer.id,
                    name=f"A {status.value}",
                    type=AssetType.BOND,
                    status=status,
                    jurisdiction="DE",
                    currency=currency,
                    latest_valuation_amount=Decimal(amount),
                    latest_valuation_currency=currency,
                )
            )
        for state, amount, age in (
            (PaymentState.CONFIRMED, "100", timedelta(days=1)),
            (PaymentState.CONFIRMED, "50.5", timedelta(days=2)),
            (PaymentState.AWAITING_FUNDS, "10", timedelta(hours=2)),
            (PaymentState.CONFIRMED, "1000", timedelta(days=45)),
        ):  # outside the 30 days
            s.add(
                Payment(
                    id=uuid.uuid4(),
                    user_id=buyer.user_id,
                    method=PaymentMethod.BANK_TRANSFER,
                    state=state,
                    amount=Decimal(amount),
                    currency="EUR",
                    idempotency_key=uuid.uuid4().hex,
                    expires_at=now + timedelta(days=1),
                    reference_code=uuid.uuid4().hex[:12],
                    created_at=now - age,
                )
            )
        await s.commit()
    return {"m": m, "now": now}


async def test_numbers_of_a_seeded_platform(gql, make_user, world) -> None:  # type: ignore[no-untyped-def]
    officer = await make_user(roles=["COMPLIANCE"])
    k = (await gql(Q, token=officer.token))["data"]["platformKpis"]
    statuses = {a["status"]: a["count"] for a in k["assetsByStatus"]}
    assert len(statuses) == len(AssetStatus) and statuses["UNDER_REVIEW"] == 0
    assert statuses["ACTIVE"] == 2 and statuses["SUSPENDED"] == 1 and statuses["DRAFT"] == 1
    assert {v["currency"]: (v["amount"], v["assets"]) for v in k["tokenizedValue"]} == {
        "EUR": ("2000000", 3),
        "USD": ("250", 1),
    }  # the market's own asset counts, valued 0
    trading = {v["window"]: v for v in k["tradingVolume"] if v["currency"] == "USDK"}
    assert (trading["24h"]["volume"], trading["24h"]["trades"], trading["24h"]["fees"]) == ("100", 1, "0.3")
    assert (trading["7d"]["volume"], trading["7d"]["trades"]) == ("200", 2)
    assert (trading["30d"]["volume"], trading["30d"]["trades"], trading["30d"]["fees"]) == ("300", 3, "0.9")
    assert {f["currency"]: f["amount"] for f in k["feesEarned"]}["USDK"] == "0.9"
    assert {(p["state"], p["currency"]): (p["count"], p["amount"]) for p in k["paymentsByState"]} == {
        ("CONFIRMED", "EUR"): (2, "150.5"),
        ("AWAITING_FUNDS", "EUR"): (1, "10"),
    }
    assert k["ageSeconds"] < 5 and k["computeMs"] > 0


async def test_a_poll_reads_the_snapshot_until_it_is_too_old(session, services, world) -> None:  # type: ignore[no-untyped-def]
    viewer = Viewer(user_id=uuid.uuid4(), roles=frozenset({"ADMIN"}))
    keys = Keys(services.settings.redis_prefix)
    now = datetime.now(UTC)
    first = await kpis.refresh_kpis(session, services.redis, keys, now)
    draft = {a.status: a.count for a in first.assets_by_status}["DRAFT"]
    await session.execute(text("UPDATE assets SET status = 'DRAFT'"))  # the tables move on...
    polled = await kpis.platform_kpis(session, services.redis, keys, viewer, now + timedelta(seconds=60))
    assert polled.computed_at == first.computed_at  # ...a poll reads the stored snapshot, computes nothing
    assert {a.status: a.count for a in polled.assets_by_status}["DRAFT"] == draft
    stale = now + timedelta(seconds=kpis.MAX_AGE_S + 1)  # no worker refreshed it: the poll recomputes and stores
    fresh = await kpis.platform_kpis(session, services.redis, keys, viewer, stale)
    assert fresh.computed_at == stale and {a.status: a.count for a in fresh.assets_by_status}["ACTIVE"] == 0
    again = await kpis.platform_kpis(session, services.redis, keys, viewer, stale + timedelta(seconds=1))
    assert again.computed_at == stale
    await services.redis.delete(kpis.snapshot_key(keys))  # missing: computed by the poll
    assert (await kpis.platform_kpis(session, services.redis, keys, viewer, stale)).computed_at == stale


async def test_only_admin_and_compliance_poll(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    for role in ("INVESTOR", "ISSUER"):
        user = await make_user(roles=[role])
        assert gql.error_code(await gql(Q, token=user.token)) == "FORBIDDEN"
    assert gql.error_code(await gql(Q)) == "UNAUTHENTICATED"


async def test_the_worker_refreshes_it_on_a_schedule(services, settings) -> None:  # type: ignore[no-untyped-def]
    from jobs import context
    from jobs.actors import build_scheduler
    from jobs.reports import refresh_platform_kpis
    from resolvers.reports.checkpoints import CHECKPOINT_INTERVAL_S

    jobs = {(j.actor_name, j.interval_s) for j in build_scheduler().jobs}
    assert ("refresh_platform_kpis", kpis.REFRESH_S) in jobs
    assert ("checkpoint_cap_tables", CHECKPOINT_INTERVAL_S) in jobs
    context.configure(settings)
    try:
        await refresh_platform_kpis.fn.__wrapped__()  # the async body, against the committed database
        raw = await services.redis.get(kpis.snapshot_key(Keys(settings.redis_prefix)))
        snap = kpis.KpiSnapshot.from_json(raw)
        assert snap.age_s(datetime.now(UTC)) < 30 and len(snap.assets_by_status) == len(AssetStatus)
    finally:
        await context.close_current()
        context.configure(None)
