"""Subscriptions racing each other at the cap, and cancels racing the close, each on its own connection with
committed data: the offering's lock makes exactly the subscriptions that fit ACTIVE, and every investor's cash adds
up whatever won the race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import Conflict
from models.assets import Asset
from models.issuance import AllocationRule, OfferingSubscription, SubscriptionState
from models.operations import ChainOperation
from models.tokens import Token
from resolvers import ledger
from resolvers.issuance import closing, offerings, subscriptions
from resolvers.issuance.offerings import Actor
from tests.trading.factories import make_market, make_trader, make_user
from tests.trading.live import committed_sessions


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    return module_database_url


@pytest.fixture
async def sf(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with committed_sessions(database_url) as factory:
        yield factory


async def _offering(
    sf: async_sessionmaker[AsyncSession],
    rule: AllocationRule,
    hard_cap: str,
    n: int,  # type: ignore[no-untyped-def]
    max_ticket: str | None = None,
):
    m = await make_market(sf)
    issuer = await make_user(sf, ["ISSUER"])
    async with sf() as s:
        token = await s.get(Token, m.token_id)
        await s.execute(update(Asset).where(Asset.id == token.asset_id).values(issuer_id=issuer))
        await s.commit()
    boss = Actor(issuer, frozenset({"ISSUER"}))
    now = datetime.now(UTC)
    spec = offerings.OfferingSpec(
        token_id=m.token_id,
        name="race",
        quote_currency=m.quote,
        price=Decimal(10),
        min_ticket=Decimal(10),
        target=Decimal(10),
        hard_cap=Decimal(hard_cap),
        opens_at=now - timedelta(minutes=1),
        closes_at=now + timedelta(hours=1),
        allocation_rule=rule,
        max_ticket=None if max_ticket is None else Decimal(max_ticket),
    )
    async with sf() as s:
        o = await offerings.create_offering(s, boss, spec)
        await offerings.open_offering(s, boss, o.id)
        await s.commit()
    traders = [await make_trader(sf, m, cash="1000") for _ in range(n)]
    return m, boss, o.id, traders


async def _subscribe(sf, offering_id, user_id, amount, key=None):  # type: ignore[no-untyped-def]
    async with sf() as s:
        sub = await subscriptions.subscribe(
            s,
            Actor(user_id, frozenset({"INVESTOR"})),
            subscriptions.SubscribeRequest(offering_id, Decimal(amount), key),
        )
        await s.commit()
        return sub


async def _cash(sf, user_id, currency):  # type: ignore[no-untyped-def]
    async with sf() as s:
        return {b.currency: b for b in await ledger.balances(s, user_id)}[currency]


async def test_concurrent_subscriptions_at_the_cap_take_exactly_what_fits(sf) -> None:  # type: ignore[no-untyped-def]
    m, _, oid, traders = await _offering(sf, AllocationRule.FIRST_COME, "500", 12)
    subs = await asyncio.gather(*[_subscribe(sf, oid, t.user_id, "100") for t in traders])
    states = [s.state for s in subs]
    assert states.count(SubscriptionState.ACTIVE) == 5
    assert {s.reason for s in subs if s.state is SubscriptionState.REJECTED} == {"CAP_REACHED"}
    reserved = Decimal(0)
    for t, s in zip(traders, subs):
        b = await _cash(sf, t.user_id, m.quote)
        assert b.available + b.reserved == Decimal(1000)
        assert b.reserved == (Decimal(100) if s.state is SubscriptionState.ACTIVE else 0)
        reserved += b.reserved
    async with sf() as s:
        o = await offerings.locked(s, oid)
        assert (o.subscribed_total, o.subscription_count) == (Decimal(500), 5) and reserved == Decimal(500)


async def test_cancels_racing_the_close_conserve_every_investors_cash(sf) -> None:  # type: ignore[no-untyped-def]
    m, boss, oid, traders = await _offering(sf, AllocationRule.PRO_RATA, "300", 6)
    subs = [await _subscribe(sf, oid, t.user_id, "100") for t in traders]

    async def cancel(sub: OfferingSubscription) -> str:
        async with sf() as s:
            try:
                await subscriptions.cancel_subscription(s, Actor(sub.user_id), sub.id)
                await s.commit()
                return "canceled"
            except Conflict:
                return "too late"

    async def close() -> str:
        async with sf() as s:
            await closing.close_offering(s, boss, oid)
            await s.commit()
            await closing.release_leftovers(s, oid)
            await s.commit()
            return "closed"

    results = await asyncio.gather(*[cancel(s) for s in subs[::2]], close(), *[cancel(s) for s in subs[1::2]])
    assert "closed" in results
    async with sf() as s:
        rows = {
            r.user_id: r
            for r in (
                await s.execute(select(OfferingSubscription).where(OfferingSubscription.offering_id == oid))
            ).scalars()
        }
    allocated = Decimal(0)
    for t in traders:
        sub, b = rows[t.user_id], await _cash(sf, t.user_id, m.quote)
        assert b.available + b.reserved == Decimal(1000)  # nothing paid yet: the mint is not confirmed
        if sub.state is SubscriptionState.ALLOCATED:
            assert b.reserved == sub.allocated_cash > 0
            allocated += sub.allocated_cash
        else:
            assert sub.state in (SubscriptionState.CANCELED, SubscriptionState.UNALLOCATED) and b.reserved == 0
    assert allocated <= Decimal(300)


async def test_subscriptions_racing_the_close_are_allocated_or_refused_never_left_reserved(sf) -> None:  # type: ignore[no-untyped-def]
    m, boss, oid, traders = await _offering(sf, AllocationRule.PRO_RATA, "400", 10)

    async def subscribe(user_id) -> OfferingSubscription:  # type: ignore[no-untyped-def]
        return await _subscribe(sf, oid, user_id, "100")

    async def close() -> None:
        async with sf() as s:
            await closing.close_offering(s, boss, oid)
            await s.commit()
            await closing.release_leftovers(s, oid)
            await s.commit()

    first = [await subscribe(t.user_id) for t in traders[:2]]  # so that the close never misses its target
    results = first + await asyncio.gather(
        *[subscribe(t.user_id) for t in traders[2:6]], close(), *[subscribe(t.user_id) for t in traders[6:]]
    )
    async with sf() as s:
        rows = {
            r.user_id: r
            for r in (
                await s.execute(select(OfferingSubscription).where(OfferingSubscription.offering_id == oid))
            ).scalars()
        }
        o = await offerings.locked(s, oid)
    taken = [r for r in rows.values() if r.state in (SubscriptionState.ALLOCATED, SubscriptionState.UNALLOCATED)]
    refused = [r for r in rows.values() if r.state is SubscriptionState.REJECTED]
    assert len(taken) + len(refused) == 10 and len(taken) >= 2
    assert {r.reason for r in refused} <= {"OFFERING_NOT_OPEN", "OFFERING_CLOSED"}
    # the close allocated exactly what was subscribed when it ran, and the running totals agree
    assert (o.subscribed_total, o.subscription_count) == (Decimal(100) * len(taken), len(taken))
    assert sum((r.allocated_cash for r in taken), Decimal(0)) == min(Decimal(400), Decimal(100) * len(taken))
    for t in traders:
        b, sub = await _cash(sf, t.user_id, m.quote), rows[t.user_id]
        assert b.available + b.reserved == Decimal(1000)
        assert b.reserved == sub.allocated_cash  # refused and unallocated: nothing held
    assert {r.id for r in results if r is not None} == {r.id for r in rows.values()}


async def test_one_investors_concurrent_subscriptions_stay_within_the_max_ticket(sf) -> None:  # type: ignore[no-untyped-def]
    m, _, oid, [t] = await _offering(sf, AllocationRule.PRO_RATA, "5000", 1, max_ticket="300")
    subs = await asyncio.gather(*[_subscribe(sf, oid, t.user_id, "100") for _ in range(6)])
    assert [s.state for s in subs].count(SubscriptionState.ACTIVE) == 3
    assert {s.reason for s in subs if s.state is SubscriptionState.REJECTED} == {"MAX_TICKET_EXCEEDED"}
    b = await _cash(sf, t.user_id, m.quote)
    assert (b.available, b.reserved) == (Decimal(700), Decimal(300))


async def test_a_client_key_sent_concurrently_subscribes_once(sf) -> None:  # type: ignore[no-untyped-def]
    m, _, oid, [t] = await _offering(sf, AllocationRule.PRO_RATA, "5000", 1)
    subs = await asyncio.gather(*[_subscribe(sf, oid, t.user_id, "100", key="k-1") for _ in range(5)])
    assert len({s.id for s in subs}) == 1 and subs[0].state is SubscriptionState.ACTIVE
    b = await _cash(sf, t.user_id, m.quote)
    assert (b.available, b.reserved) == (Decimal(900), Decimal(100))
    async with sf() as s:
        o = await offerings.locked(s, oid)
        assert (o.subscribed_total, o.subscription_count) == (Decimal(100), 1)


async def test_leftovers_not_released_after_the_close_are_released_by_the_first_mint_settlement(sf) -> None:  # type: ignore[no-untyped-def]
    m, boss, oid, traders = await _offering(sf, AllocationRule.PRO_RATA, "150", 2)
    subs = [await _subscribe(sf, oid, t.user_id, amount) for t, amount in zip(traders, ("100", "105"))]
    async with sf() as s:
        await closing.close_offering(s, boss, oid)
        await s.commit()  # and the process dies before release_leftovers
    assert [await _cash(sf, t.user_id, m.quote) for t in traders] == [
        ledger.Balance(m.quote, Decimal(900), Decimal(100)),
        ledger.Balance(m.quote, Decimal(895), Decimal(105)),
    ]
    async with sf() as s:
        [op] = (
            (await s.execute(select(ChainOperation).where(ChainOperation.business_ref.like(f"offering:{oid}:mint:%"))))
            .scalars()
            .all()
        )
        await closing.mint_confirmed(s, op)
        await s.commit()
        assert not await closing.release_leftovers(s, oid)  # once only
        await s.commit()
    async with sf() as s:
        rows = {
            r.user_id: r
            for r in (
                await s.execute(select(OfferingSubscription).where(OfferingSubscription.offering_id == oid))
            ).scalars()
        }
    # 15 lots of 10 for 10 + 10 asked: 7 each, the last one by time priority to the first
    assert [rows[t.user_id].allocated_cash for t in traders] == [Decimal(80), Decimal(70)]
    assert {r.state for r in rows.values()} == {SubscriptionState.SETTLED} and len(subs) == 2
    assert [await _cash(sf, t.user_id, m.quote) for t in traders] == [
        ledger.Balance(m.quote, Decimal(920), Decimal(0)),
        ledger.Balance(m.quote, Decimal(930), Decimal(0)),
    ]


async def test_the_scheduled_close_allocates_and_releases_the_leftovers(sf) -> None:  # type: ignore[no-untyped-def]
    from jobs.offerings import close_due
    from models.issuance import Offering, OfferingState

    m, _, oid, traders = await _offering(sf, AllocationRule.PRO_RATA, "150", 2)
    for t, amount in zip(traders, ("100", "105")):
        await _subscribe(sf, oid, t.user_id, amount)
    async with sf() as s:
        await s.execute(
            update(Offering).where(Offering.id == oid).values(closes_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await s.commit()
    assert await close_due(sf) >= 1
    async with sf() as s:
        assert (await offerings.locked(s, oid)).state is OfferingState.ALLOCATED
    # allocated cash stays reserved until the mint settles; the rest is back at once
    assert [await _cash(sf, t.user_id, m.quote) for t in traders] == [
        ledger.Balance(m.quote, Decimal(920), Decimal(80)),
        ledger.Balance(m.quote, Decimal(930), Decimal(70)),
    ]
