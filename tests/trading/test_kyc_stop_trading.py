"""An investor who may not trade any more (KYC suspended, expired by COMPLIANCE or lapsed and swept, back in review)
loses their resting orders in the same transaction: CANCELED with reason KYC_NOT_APPROVED, reservations released,
one book event per market and one order event per order published after the commit, and a later crossing order
does not trade with them (it would fail at settlement: the owner's identity left the registry). Committed data and
the real Redis, run as the mutation runs (resolvers/identity/kyc.py, schema/kyc.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select, update

from models.identity import AuditLog, KycCase
from models.tokens import Holding
from models.trading import Order, OrderStatus, OrderType, Side, Trade
from resolvers import ledger
from resolvers.identity import kyc
from resolvers.trading import book, market_data, sequencer
from resolvers.trading.orders import OrderRequest, place_order
from resolvers.unit_of_work import UnitOfWork
from resolvers.viewer import Viewer
from tests.trading.factories import make_market, make_trader, make_user
from tests.trading.live import committed_sessions, listening


def _req(market_id: uuid.UUID, side: Side, qty: str, price: str) -> OrderRequest:
    return OrderRequest(market_id, side, OrderType.LIMIT, Decimal(qty), Decimal(price))


async def _as_mutation(sf: Any, hub: Any, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """As schema/kyc.py runs a KYC mutation: a unit of work, the write `sequencer.detached`, the publish after it."""
    async with sf() as s:
        uow = UnitOfWork(s)

        async def body() -> Any:
            result = await sequencer.detached(s, hub, work, lambda done: done[1])
            uow.after_commit(lambda: market_data.publish(hub, result[1]))
            return result

        return await uow.run(body)


async def _drain(listener: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every message until none arrives for a while (channel without prefix, body)."""
    out: list[tuple[str, dict[str, Any]]] = []
    while (message := await listener.get_message(ignore_subscribe_messages=True, timeout=0.5)) is not None:
        out.append((message["channel"].decode().split(":", 2)[-1], json.loads(message["data"])))
    return out


async def _setup(sf: Any) -> tuple[Any, Any, Any, uuid.UUID]:
    m = await make_market(sf, maker_bps=0, taker_bps=0)
    alice = await make_trader(sf, m, cash="1000", tokens="10")
    bob = await make_trader(sf, m, cash="1000")
    async with sf() as s:
        case_id = (await s.execute(select(KycCase.id).where(KycCase.user_id == alice.user_id))).scalar_one()
    return m, alice, bob, case_id


async def _rest_alices_orders(sf: Any, m: Any, alice: Any) -> list[uuid.UUID]:
    ids = []
    for side, qty, price in ((Side.SELL, "2", "30"), (Side.BUY, "1", "20")):
        async with sf() as s:
            placed = await place_order(s, alice.user_id, _req(m.market_id, side, qty, price))
        assert placed.order.status is OrderStatus.NEW
        ids.append(placed.order.id)
    return ids


async def _assert_stopped(sf: Any, m: Any, alice: Any, bob: Any, ids: list[uuid.UUID], actor: uuid.UUID | None) -> None:
    async with sf() as s:
        rows = (await s.execute(select(Order).where(Order.id.in_(ids)))).scalars().all()
        assert {(o.status, o.reason, o.reserved_cash) for o in rows} == {
            (OrderStatus.CANCELED, "KYC_NOT_APPROVED", Decimal(0))
        }
        (cash,) = [b for b in await ledger.balances(s, alice.user_id) if b.currency == m.quote]
        assert (cash.available, cash.reserved) == (Decimal("1000"), Decimal(0))  # the buy's reservation came back
        audit = (
            await s.execute(
                select(AuditLog.actor_id, AuditLog.details).where(
                    AuditLog.action == "order.canceled", AuditLog.target_id.in_([str(i) for i in ids])
                )
            )
        ).all()
        assert sorted(audit, key=str) == [(actor, {"reason": "KYC_NOT_APPROVED"})] * 2
    async with sf() as s:  # a later crossing order finds nothing to trade with
        placed = await place_order(s, bob.user_id, _req(m.market_id, Side.BUY, "2", "30"))
    assert placed.order.status is OrderStatus.NEW and placed.order.filled_quantity == 0
    async with sf() as s:
        assert (await s.execute(select(Trade).where(Trade.market_id == m.market_id))).first() is None


def _mine(messages: list[tuple[str, dict[str, Any]]], m: Any, alice: Any) -> tuple[list[Any], list[Any]]:
    book = [e for c, e in messages if c == market_data.book_channel(m.market_id)]
    orders = [e for c, e in messages if c == market_data.orders_channel(alice.user_id)]
    return book, orders


async def test_suspending_kyc_cancels_resting_orders_and_publishes_once(
    module_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with committed_sessions(module_database_url) as sf:
        m, alice, bob, case_id = await _setup(sf)
        officer = await make_user(sf, ["COMPLIANCE"])
        ids = await _rest_alices_orders(sf, m, alice)
        ctx = SimpleNamespace(
            viewer=Viewer(officer, frozenset({"COMPLIANCE"})),
            request_id="r-suspend",
            settings=SimpleNamespace(kyc_approval_days=365),
        )
        publisher = Redis.from_url(redis_url)
        hub = SimpleNamespace(redis=publisher, prefix=redis_prefix)
        try:
            async with listening(redis_url, redis_prefix) as listener:
                case, _ = await _as_mutation(sf, hub, lambda s: kyc.suspend(ctx, case_id, "sanctions hit", s))
                assert case.status.value == "SUSPENDED"
                book, orders = _mine(await _drain(listener), m, alice)
        finally:
            await publisher.aclose()
        assert len(book) == 1, book  # one book event for the market, after the commit
        assert sorted(e["id"] for e in orders) == sorted(str(i) for i in ids)  # one order event each
        assert {(e["status"], e["reason"]) for e in orders} == {("CANCELED", "KYC_NOT_APPROVED")}
        await _assert_stopped(sf, m, alice, bob, ids, officer)


async def test_expiring_kyc_by_compliance_cancels_resting_orders(module_database_url: str) -> None:
    async with committed_sessions(module_database_url) as sf:
        m, alice, bob, case_id = await _setup(sf)
        officer = await make_user(sf, ["COMPLIANCE"])
        ids = await _rest_alices_orders(sf, m, alice)
        ctx = SimpleNamespace(
            viewer=Viewer(officer, frozenset({"COMPLIANCE"})),
            request_id=None,
            settings=SimpleNamespace(kyc_approval_days=365),
        )
        async with sf() as s:
            case, events = await UnitOfWork(s).run(lambda: kyc.expire(ctx, case_id, None, s))
        assert case.status.value == "EXPIRED"
        assert len(_mine(events.messages, m, alice)[0]) == 1
        await _assert_stopped(sf, m, alice, bob, ids, officer)


async def test_the_lapsed_approval_sweep_cancels_resting_orders_and_publishes_once(
    module_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with committed_sessions(module_database_url) as sf:
        m, alice, bob, case_id = await _setup(sf)
        ids = await _rest_alices_orders(sf, m, alice)
        now = datetime.now(UTC)
        async with sf() as s:  # the approval lapsed a second ago; no one wrote EXPIRED yet
            await s.execute(update(KycCase).where(KycCase.id == case_id).values(expires_at=now - timedelta(seconds=1)))
            await s.commit()
        publisher = Redis.from_url(redis_url)
        hub = SimpleNamespace(redis=publisher, prefix=redis_prefix)
        try:
            async with listening(redis_url, redis_prefix) as listener:
                async with sf() as s:
                    assert await kyc.expire_lapsed(s, now, hub=hub) >= 1  # other tests' lapsed cases go too
                book, orders = _mine(await _drain(listener), m, alice)
        finally:
            await publisher.aclose()
        assert len(book) == 1, book
        assert sorted(e["id"] for e in orders) == sorted(str(i) for i in ids)
        await _assert_stopped(sf, m, alice, bob, ids, None)


@contextlib.asynccontextmanager
async def _market_lock(sf: Any, market_id: uuid.UUID) -> AsyncIterator[None]:
    """Another transaction holds the market lock: whatever needs the book waits until it commits."""
    async with sf() as s:
        await book.lock_market(s, market_id)
        yield
        await s.commit()


async def _race(sf: Any, first: str) -> OrderStatus:
    """Alice rests SELL 2@30; her suspension and Bob's BUY 2@30 queue on the market lock, `first` first."""
    m, alice, bob, case_id = await _setup(sf)
    officer = await make_user(sf, ["COMPLIANCE"])
    async with sf() as s:
        sell = (await place_order(s, alice.user_id, _req(m.market_id, Side.SELL, "2", "30"))).order.id
    ctx = SimpleNamespace(
        viewer=Viewer(officer, frozenset({"COMPLIANCE"})),
        request_id=None,
        settings=SimpleNamespace(kyc_approval_days=365),
    )

    async def suspend() -> Any:
        async with sf() as s:
            return await UnitOfWork(s).run(lambda: kyc.suspend(ctx, case_id, "sanctions hit", s))

    async def buy() -> Any:
        async with sf() as s:
            return await place_order(s, bob.user_id, _req(m.market_id, Side.BUY, "2", "30"))

    async with _market_lock(sf, m.market_id):
        tasks = [asyncio.create_task(suspend() if first == "suspend" else buy())]
        await asyncio.sleep(0.2)
        tasks.append(asyncio.create_task(buy() if first == "suspend" else suspend()))
        await asyncio.sleep(0.2)
    await asyncio.gather(*tasks)
    async with sf() as s:
        order = (await s.execute(select(Order).where(Order.id == sell))).scalar_one()
        trades = (await s.execute(select(Trade).where(Trade.market_id == m.market_id))).scalars().all()
    if order.status is OrderStatus.CANCELED:
        assert (order.reason, order.filled_quantity, trades) == ("KYC_NOT_APPROVED", 0, [])
    else:
        assert order.status is OrderStatus.FILLED and [t.quantity for t in trades] == [Decimal(2)]
    return order.status


async def test_a_suspension_racing_a_crossing_order_never_both_fills_and_cancels(module_database_url: str) -> None:
    """The suspension cancels under the market lock, like a user cancel: Alice's resting sell is either filled by
    Bob's order (which got the lock first) or canceled (no trade), never both, whichever way the race goes."""
    async with committed_sessions(module_database_url) as sf:
        assert await _race(sf, "suspend") is OrderStatus.CANCELED
        assert await _race(sf, "order") is OrderStatus.FILLED
        assert await _race(sf, "suspend") is OrderStatus.CANCELED


async def _lapse(sf: Any, case_id: uuid.UUID) -> None:
    """The approval lapsed a second ago and no sweep wrote EXPIRED yet: its orders are still on the book."""
    async with sf() as s:
        await s.execute(
            update(KycCase).where(KycCase.id == case_id).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await s.commit()


async def _freeze_indexed(sf: Any, m: Any, alice: Any) -> None:
    """The indexer stored AddressFrozen for Alice's wallet (holdings.frozen); the agent has not confirmed the freeze
    yet (or it was not the platform's): her orders are still on the book."""
    async with sf() as s:
        await s.execute(
            update(Holding)
            .where(Holding.chain_id == m.chain_id, Holding.token_address == m.token_address)
            .where(Holding.holder == alice.wallet)
            .values(frozen=True)
        )
        await s.commit()


async def _alices_orders_barred(
    sf: Any, m: Any, alice: Any, ids: list[uuid.UUID], reason: str = "KYC_NOT_APPROVED"
) -> None:
    async with sf() as s:
        rows = (await s.execute(select(Order).where(Order.id.in_(ids)))).scalars().all()
        assert {(o.status, o.reason, o.filled_quantity, o.reserved_cash) for o in rows} == {
            (OrderStatus.CANCELED, reason, Decimal(0), Decimal(0))
        }
        trades = (await s.execute(select(Trade).where(Trade.market_id == m.market_id))).scalars().all()
        assert [t for t in trades if alice.user_id in (t.buyer_id, t.seller_id)] == []
        (cash,) = [b for b in await ledger.balances(s, alice.user_id) if b.currency == m.quote]
        assert (cash.available, cash.reserved) == (Decimal("1000"), Decimal(0))  # the buy's reservation came back


async def test_matching_cancels_a_maker_whose_approval_lapsed_instead_of_trading(module_database_url: str) -> None:
    """Between an approval's lapse and the sweep, a crossing order (placed alone) takes the maker off the book,
    CANCELED KYC_NOT_APPROVED, and trades with nothing: the trade would fail at settlement."""
    async with committed_sessions(module_database_url) as sf:
        m, alice, bob, case_id = await _setup(sf)
        async with sf() as s:
            sell = (await place_order(s, alice.user_id, _req(m.market_id, Side.SELL, "2", "30"))).order.id
        await _lapse(sf, case_id)
        async with sf() as s:
            placed = await place_order(s, bob.user_id, _req(m.market_id, Side.BUY, "2", "30"))
        assert placed.order.status is OrderStatus.NEW and placed.order.filled_quantity == 0
        await _alices_orders_barred(sf, m, alice, [sell])


async def test_matching_cancels_a_maker_whose_wallet_is_frozen_instead_of_trading(module_database_url: str) -> None:
    """Between the indexed freeze of a maker's wallet and the agent's confirmation (or a freeze the platform did not
    send), a crossing order takes the maker off the book, CANCELED WALLET_FROZEN, and trades with nothing."""
    async with committed_sessions(module_database_url) as sf:
        m, alice, bob, _ = await _setup(sf)
        async with sf() as s:
            sell = (await place_order(s, alice.user_id, _req(m.market_id, Side.SELL, "2", "30"))).order.id
        await _freeze_indexed(sf, m, alice)
        async with sf() as s:
            placed = await place_order(s, bob.user_id, _req(m.market_id, Side.BUY, "2", "30"))
        assert placed.order.status is OrderStatus.NEW and placed.order.filled_quantity == 0
        await _alices_orders_barred(sf, m, alice, [sell], "WALLET_FROZEN")


@pytest.mark.parametrize("bar", ["lapse", "freeze"])
async def test_a_batch_of_placements_cancels_a_barred_maker_instead_of_trading(
    module_database_url: str, monkeypatch: Any, bar: str
) -> None:
    """The same in the sequencer's batch path (resolvers/trading/batch.py): Alice's resting SELL and BUY, her
    approval lapsed (or her wallet's freeze indexed); two crossing orders placed in one batch cancel both (the BUY's
    reservation released) and trade only with each other."""
    from resolvers.trading import batch as batch_placement

    sizes: list[int] = []
    real = batch_placement.place_batch

    async def spy(session: Any, market_id: uuid.UUID, jobs: list[Any]) -> Any:
        sizes.append(len(jobs))
        return await real(session, market_id, jobs)

    monkeypatch.setattr(batch_placement, "place_batch", spy)
    async with committed_sessions(module_database_url) as sf:
        m, alice, bob, case_id = await _setup(sf)
        carol = await make_trader(sf, m, cash="1000")
        ids = await _rest_alices_orders(sf, m, alice)  # SELL 2@30, BUY 1@20
        if bar == "lapse":
            await _lapse(sf, case_id)
        else:
            await _freeze_indexed(sf, m, alice)

        async def place(user: uuid.UUID, side: Side, qty: str, price: str) -> Any:
            async with sf() as s:
                return await UnitOfWork(s).run(lambda: place_order(s, user, _req(m.market_id, side, qty, price)))

        dave = await make_trader(sf, m, tokens="10")
        async with _market_lock(sf, m.market_id):
            first = asyncio.create_task(place(carol.user_id, Side.BUY, "1", "10"))  # crosses nothing; runs alone
            await asyncio.sleep(0.2)
            # queued behind it, one batch: Dave's SELL 1@20 walks Alice's BUY 1@20 (canceled) and rests; Bob's BUY
            # 2@30 trades 1 with Dave, walks Alice's SELL 2@30 (canceled) and rests the other 1
            sell = asyncio.create_task(place(dave.user_id, Side.SELL, "1", "20"))
            await asyncio.sleep(0.05)
            buy = asyncio.create_task(place(bob.user_id, Side.BUY, "2", "30"))
            await asyncio.sleep(0.2)
        await first
        sold, bought = await sell, await buy
        assert sizes == [2]
        assert (sold.order.status, sold.order.filled_quantity) == (OrderStatus.NEW, 0)
        assert (bought.order.status, bought.order.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, 1)
        await _alices_orders_barred(sf, m, alice, ids, "KYC_NOT_APPROVED" if bar == "lapse" else "WALLET_FROZEN")


async def _confirm(
    sf: Any, redis_url: str, redis_prefix: str, m: Any, alice: Any, kind: str, args: list[Any]
) -> tuple[list[Any], list[Any]]:
    """The agent confirms a compliance operation `kind` on the market's token (agent/effects/compliance.py) with
    a live publisher: (book events, alice's order events) published after its commit."""
    from agent.effects import compliance, live

    op = SimpleNamespace(
        id=uuid.uuid4(),
        kind=kind,
        chain_id=m.chain_id,
        contract=m.token_address,
        args=args,
        created_by=None,
        mined_tx_hash="0x" + uuid.uuid4().hex * 2,
        tx_hash=None,
    )
    publisher = Redis.from_url(redis_url)
    live.configure(publisher, redis_prefix)
    try:
        async with listening(redis_url, redis_prefix) as listener:
            async with sf() as s:
                await compliance.on_confirmed(s, op)  # type: ignore[arg-type]
                await s.commit()
            await live.drain()
            return _mine(await _drain(listener), m, alice)
    finally:
        live.configure(None)
        await publisher.aclose()


async def test_a_confirmed_wallet_freeze_cancels_the_wallets_orders(
    module_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The agent completes a whole-wallet freeze (agent/effects/compliance.py): the wallet's open orders in the
    token's markets are CANCELED with reason WALLET_FROZEN in the same transaction, reservations released, their
    events published once after the commit; a later crossing order does not trade with them."""

    async with committed_sessions(module_database_url) as sf:
        m, alice, bob, _ = await _setup(sf)
        ids = await _rest_alices_orders(sf, m, alice)
        book_events, orders = await _confirm(
            sf, redis_url, redis_prefix, m, alice, "compliance.freeze", [alice.wallet, True]
        )
        assert len(book_events) == 1, book_events
        assert sorted(e["id"] for e in orders) == sorted(str(i) for i in ids)
        assert {(e["status"], e["reason"]) for e in orders} == {("CANCELED", "WALLET_FROZEN")}
        async with sf() as s:
            rows = (await s.execute(select(Order).where(Order.id.in_(ids)))).scalars().all()
            assert {(o.status, o.reason, o.reserved_cash) for o in rows} == {
                (OrderStatus.CANCELED, "WALLET_FROZEN", Decimal(0))
            }
            (cash,) = [b for b in await ledger.balances(s, alice.user_id) if b.currency == m.quote]
            assert (cash.available, cash.reserved) == (Decimal("1000"), Decimal(0))
        async with sf() as s:
            placed = await place_order(s, bob.user_id, _req(m.market_id, Side.BUY, "2", "30"))
        assert placed.order.status is OrderStatus.NEW and placed.order.filled_quantity == 0


async def test_a_confirmed_partial_freeze_cancels_the_sells_it_leaves_uncovered(
    module_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The agent completes freezePartialTokens (agent/effects/compliance.py) after the indexer stored TokensFrozen:
    Alice (10 tokens, 3 now frozen) rests SELL 4@30, 4@31, 2@32 and a BUY. In arrival order her 7 unfrozen tokens
    cover the first 4, not the next 4, then 2: that one is CANCELED WALLET_FROZEN in the same transaction, its events published
    once after the commit; the others, and her BUY, stay, and a crossing order does not trade with the canceled one."""

    async with committed_sessions(module_database_url) as sf:
        m, alice, bob, _ = await _setup(sf)
        placed = {}
        for side, qty, price in (
            (Side.SELL, "4", "30"),
            (Side.SELL, "4", "31"),
            (Side.SELL, "2", "32"),
            (Side.BUY, "1", "20"),
        ):
            async with sf() as s:
                order = (await place_order(s, alice.user_id, _req(m.market_id, side, qty, price))).order
            assert order.status is OrderStatus.NEW
            placed[price] = order.id
        frozen = 3 * 10**m.decimals
        async with sf() as s:  # what the indexer stored from TokensFrozen before the operation was confirmed
            await s.execute(
                update(Holding)
                .where(Holding.chain_id == m.chain_id, Holding.token_address == m.token_address)
                .where(Holding.holder == alice.wallet)
                .values(frozen_amount=frozen)
            )
            await s.commit()
        book_events, orders = await _confirm(
            sf, redis_url, redis_prefix, m, alice, "compliance.freeze_partial", [alice.wallet, frozen]
        )
        assert len(book_events) == 1, book_events
        assert [(e["id"], e["status"], e["reason"]) for e in orders] == [
            (str(placed["31"]), "CANCELED", "WALLET_FROZEN")
        ]
        async with sf() as s:
            rows = {o.id: o for o in (await s.execute(select(Order).where(Order.id.in_(placed.values())))).scalars()}
        assert {p: (rows[i].status, rows[i].reason) for p, i in placed.items()} == {
            "30": (OrderStatus.NEW, None),
            "31": (OrderStatus.CANCELED, "WALLET_FROZEN"),
            "32": (OrderStatus.NEW, None),
            "20": (OrderStatus.NEW, None),
        }
        async with sf() as s:  # Bob's BUY 5@31 takes the 4@30 and nothing at 31
            taken = await place_order(s, bob.user_id, _req(m.market_id, Side.BUY, "5", "31"))
        assert (taken.order.status, taken.order.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, Decimal(4))
