"""The placeOrder sequencer (resolvers/trading/sequencer.py) under concurrent load: many placements at once on one
market, inside units of work (as the mutation runs them) on two engines (two API processes' pools: two lanes whose
batches contend for the market lock), with repeated clientOrderIds (also inside one batch), invalid requests and
compliance refusals mixed in. Checks: batches really formed; no overfill; fills conserved between orders and
trades; the ledger sums to zero and every reservation matches its open buy; the book is not crossed; every order's
final state consistent; each trade is in exactly one placement's events (published once); a failing order falls
back to placing alone without failing the others of its batch."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from core.errors import BadUserInput
from models.trading import OPEN_STATUSES, Order, OrderStatus, OrderType, Side, TimeInForce, Trade
from resolvers import ledger
from resolvers.trading import batch, market_data, orders, sequencer
from resolvers.trading.orders import OrderRequest, place_order
from resolvers.unit_of_work import UnitOfWork
from tests.trading.factories import make_market, make_trader
from tests.trading.live import committed_sessions

START_CASH = Decimal("100000")
START_TOKENS = Decimal("1000")


async def place_in_uow(sf, user_id: uuid.UUID, req: OrderRequest) -> orders.Placed:  # type: ignore[no-untyped-def]
    """As the placeOrder mutation runs it: in a unit of work on a session bound to an engine."""
    async with sf() as s:
        return await UnitOfWork(s).run(lambda: place_order(s, user_id, req, request_id=str(uuid.uuid4())))


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the size of every batch run together (a spy: the real function runs)."""
    sizes: list[int] = []
    real = sequencer._together

    async def spy(session, market_id, batch):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        return await real(session, market_id, batch)

    monkeypatch.setattr(sequencer, "_together", spy)
    return sizes


def _random_request(rng: random.Random, market_id: uuid.UUID, cid: str | None) -> OrderRequest:
    side = rng.choice([Side.BUY, Side.SELL])
    kind = rng.choices(["GTC", "IOC", "FOK", "MARKET"], [6, 2, 1, 1])[0]
    price = Decimal(rng.randint(95, 105)) / 10
    if kind == "MARKET":
        cap = price if side is Side.BUY else None
        return OrderRequest(market_id, side, OrderType.MARKET, Decimal(rng.randint(1, 8)), cap, None, None, cid)
    tif = TimeInForce(kind)
    return OrderRequest(market_id, side, OrderType.LIMIT, Decimal(rng.randint(1, 8)), price, tif, None, cid)


async def test_concurrent_batches_from_two_engines_keep_every_invariant(module_database_url, batch_sizes):  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    async with committed_sessions(module_database_url) as sf_a, committed_sessions(module_database_url) as sf_b:
        m = await make_market(sf_a, tick="0.1", lot="1", maker_bps=10, taker_bps=25)
        traders = [await make_trader(sf_a, m, cash=START_CASH, tokens=START_TOKENS) for _ in range(6)]
        broke = await make_trader(sf_a, m, cash="1")  # every buy of it is REJECTED (INSUFFICIENT_CASH)
        jobs: list[tuple[Any, uuid.UUID, OrderRequest]] = []
        reuses: list[tuple[uuid.UUID, OrderRequest]] = []
        for i in range(240):
            t = traders[i % len(traders)]
            cid = f"c{i}" if i % 3 or i % 20 == 5 else None
            req = _random_request(rng, m.market_id, cid)
            jobs.append((sf_a if i % 2 else sf_b, t.user_id, req))
            if i % 20 == 5:  # the same order again at once: one order, the same answer twice
                jobs.append((sf_b if i % 2 else sf_a, t.user_id, req))
            if i % 40 == 5:  # its clientOrderId for another order, later: refused for its caller only
                reuses.append((t.user_id, replace(req, quantity=req.quantity + 1)))
            if i % 30 == 0:  # invalid: off the tick; raises for its caller only
                jobs.append(
                    (sf_a, t.user_id, OrderRequest(m.market_id, Side.BUY, OrderType.LIMIT, Decimal(1), Decimal("9.95")))
                )
            if i % 25 == 0:
                jobs.append(
                    (sf_b, broke.user_id, OrderRequest(m.market_id, Side.BUY, OrderType.LIMIT, Decimal(5), Decimal(10)))
                )
        outcomes = await asyncio.wait_for(
            asyncio.gather(*[place_in_uow(sf, u, r) for sf, u, r in jobs], return_exceptions=True), timeout=240
        )

        assert max(batch_sizes) > 1, "placements of one market should have been batched"
        placed: list[orders.Placed] = []
        for (_, user_id, req), out in zip(jobs, outcomes):
            if req.price == Decimal("9.95"):
                assert isinstance(out, BadUserInput) and out.extensions["field"] == "price"
                continue
            assert isinstance(out, orders.Placed), out
            assert out.order.user_id == user_id
            if user_id == broke.user_id:
                assert (out.order.status, out.order.reason) == (OrderStatus.REJECTED, "INSUFFICIENT_CASH")
            placed.append(out)
        by_cid: dict[tuple[uuid.UUID, str], set[uuid.UUID]] = {}
        for p in placed:
            if p.order.client_order_id is not None:
                by_cid.setdefault((p.order.user_id, p.order.client_order_id), set()).add(p.order.id)
        assert all(len(ids) == 1 for ids in by_cid.values()), "a clientOrderId made two orders"
        assert sum(p.replayed for p in placed) == sum(1 for i in range(240) if i % 20 == 5)
        refused = await asyncio.gather(*[place_in_uow(sf_a, u, r) for u, r in reuses], return_exceptions=True)
        assert len(refused) == 6 and all(isinstance(out, orders.ClientOrderIdReused) for out in refused), refused

        async with sf_a() as s:
            rows = (await s.execute(select(Order).where(Order.market_id == m.market_id))).scalars().all()
            trades = (await s.execute(select(Trade).where(Trade.market_id == m.market_id))).scalars().all()
            assert {o.id for o in rows} == {p.order.id for p in placed}
            assert len(trades) > 20, "the random flow should cross often"
            per_order: Counter[uuid.UUID] = Counter()
            for t in trades:
                per_order[t.maker_order_id] += t.quantity  # type: ignore[assignment]
                per_order[t.taker_order_id] += t.quantity  # type: ignore[assignment]
            for o in rows:
                assert o.filled_quantity <= o.quantity, f"overfilled {o.id}"
                assert per_order.get(o.id, 0) == o.filled_quantity, f"quantity not conserved for {o.id}"
                assert (o.status is OrderStatus.FILLED) == (o.filled_quantity == o.quantity)
                if o.status not in OPEN_STATUSES:
                    assert o.reserved_cash == 0
            bid = max((o.price for o in rows if o.status in OPEN_STATUSES and o.side is Side.BUY), default=None)
            ask = min((o.price for o in rows if o.status in OPEN_STATUSES and o.side is Side.SELL), default=None)
            assert bid is None or ask is None or bid < ask
            assert (await ledger.total_by_currency(s))[m.quote] == 0
            for trader in [*traders, broke]:
                bal = {b.currency: b for b in await ledger.balances(s, trader.user_id)}[m.quote]
                assert bal.reserved == sum((o.reserved_cash for o in rows if o.user_id == trader.user_id), Decimal(0))
                assert bal.available >= 0

            # the book events agree with the book: per level, the latest event's total is what is open now
            latest: dict[tuple[str, Decimal], tuple[int, Decimal]] = {}
            for p in placed:
                for ch, e in p.events.messages:
                    if ch == market_data.book_channel(m.market_id):
                        for side, entries in (("BUY", e["bids"]), ("SELL", e["asks"])):
                            for price, qty in entries:
                                if latest.get((side, price), (-1, 0))[0] < e["sequence"]:
                                    latest[(side, price)] = (e["sequence"], qty)
            assert latest
            for (side, price), (_, qty) in latest.items():
                open_qty = sum(
                    (
                        o.quantity - o.filled_quantity
                        for o in rows
                        if o.status in OPEN_STATUSES and o.side.value == side and o.price == price
                    ),
                    Decimal(0),
                )
                assert qty == open_qty, (side, price)
            sequences = [e["sequence"] for p in placed for ch, e in p.events.messages if "book" in ch]
            assert len(sequences) == len(set(sequences))

        # published once: every trade is in exactly one placement's events; a replay carries none
        channel = market_data.trades_channel(m.market_id)
        published = Counter(e["id"] for p in placed for ch, e in p.events.messages if ch == channel)
        assert set(published) == {t.id for t in trades} and set(published.values()) == {1}
        assert all(not p.events.messages for p in placed if p.replayed)


async def test_a_failing_order_falls_back_alone_and_spares_its_batch(module_database_url, monkeypatch, batch_sizes):  # type: ignore[no-untyped-def]
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf, tick="0.1", lot="1", maker_bps=0, taker_bps=0)
        seller = await make_trader(sf, m, tokens="100")
        buyer = await make_trader(sf, m, cash="10000")
        poisoned = Decimal(7)  # a fault after the order wrote (as a ledger refusal or an unexpected error would)
        real = orders.place_locked
        alone_runs: list[Decimal] = []

        async def faulty(session, user_id, req, *, request_id, now):  # type: ignore[no-untyped-def]
            placed = await real(session, user_id, req, request_id=request_id, now=now)
            if req.quantity == poisoned:
                raise RuntimeError("injected fault after writing")
            return placed

        real_alone = orders.place_alone

        async def counting_alone(session, user_id, req, **kw):  # type: ignore[no-untyped-def]
            alone_runs.append(req.quantity)
            return await real_alone(session, user_id, req, **kw)

        real_write = batch._Batch.write

        async def faulty_write(self, session):  # type: ignore[no-untyped-def]  # the batch's one write
            placed = await real_write(self, session)
            if any(plan.taker.quantity == poisoned for plan in self.plans):
                raise RuntimeError("injected fault after writing")
            return placed

        monkeypatch.setattr(orders, "place_locked", faulty)
        monkeypatch.setattr(batch._Batch, "write", faulty_write)
        monkeypatch.setattr(orders, "place_alone", counting_alone)
        reqs = [
            (seller.user_id, OrderRequest(m.market_id, Side.SELL, OrderType.LIMIT, Decimal(q), Decimal(10), None, None))
            for q in (1, 2, 3, 7, 4, 5)
        ]
        reqs.append((buyer.user_id, OrderRequest(m.market_id, Side.BUY, OrderType.LIMIT, Decimal(6), Decimal(10))))
        outcomes = await asyncio.gather(*[place_in_uow(sf, u, r) for u, r in reqs], return_exceptions=True)
        assert any(size > 1 for size in batch_sizes)
        assert len(alone_runs) >= len(reqs) - 1  # the failed batch ran again order by order
        for (_, req), out in zip(reqs, outcomes):
            if req.quantity == poisoned:
                assert isinstance(out, RuntimeError)
            else:
                assert isinstance(out, orders.Placed), out
        async with sf() as s:
            rows = (await s.execute(select(Order).where(Order.market_id == m.market_id))).scalars().all()
            assert sorted(o.quantity for o in rows) == [1, 2, 3, 4, 5, 6]  # each once; the poisoned one never
            trades = (await s.execute(select(Trade).where(Trade.market_id == m.market_id))).scalars().all()
            assert sum(t.quantity for t in trades) == 6
            assert (await ledger.total_by_currency(s))[m.quote] == 0


async def test_a_failed_commit_is_answered_not_placed_again(module_database_url, monkeypatch, batch_sizes):  # type: ignore[no-untyped-def]
    """A COMMIT that fails may still have taken effect: the batch's callers get the error, nothing is re-run (here
    the fault rolls back, so nothing is stored and a retry with the same clientOrderId places the order once)."""
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf, tick="0.1", lot="1", maker_bps=0, taker_bps=0)
        seller = await make_trader(sf, m, tokens="100")
        real_session = sequencer._session

        def failing_session(engine):  # type: ignore[no-untyped-def]
            session = real_session(engine)

            async def commit() -> None:
                await session.rollback()
                raise ConnectionResetError("injected: connection lost during COMMIT")

            session.commit = commit  # type: ignore[method-assign]
            return session

        monkeypatch.setattr(sequencer, "_session", failing_session)
        reqs = [
            OrderRequest(m.market_id, Side.SELL, OrderType.LIMIT, Decimal(q), Decimal(10), None, None, f"f{q}")
            for q in range(1, 7)
        ]
        outcomes = await asyncio.gather(*[place_in_uow(sf, seller.user_id, r) for r in reqs], return_exceptions=True)
        assert any(size > 1 for size in batch_sizes)
        assert all(isinstance(out, ConnectionResetError) for out in outcomes), outcomes
        monkeypatch.setattr(sequencer, "_session", real_session)
        again = await asyncio.gather(*[place_in_uow(sf, seller.user_id, r) for r in reqs])
        assert not any(p.replayed for p in again)
        async with sf() as s:
            rows = (await s.execute(select(Order).where(Order.market_id == m.market_id))).scalars().all()
            assert sorted(o.quantity for o in rows) == [1, 2, 3, 4, 5, 6]


async def test_cash_the_ledger_refuses_fails_that_order_alone(module_database_url, monkeypatch, batch_sizes):  # type: ignore[no-untyped-def]
    """The gate's cash check passed but the ledger refuses (as when another market's placement spent the cash in
    between; here the gate is told to let it through): the order's statement fails on the balance constraint, its
    batch rolls back and runs order by order, the order is answered CONFLICT (INSUFFICIENT_FUNDS) and writes
    nothing; the others of its batch are placed; the ledger still sums to zero."""
    from core.errors import Conflict
    from resolvers.trading import gate

    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf, tick="0.1", lot="1", maker_bps=0, taker_bps=0)
        seller = await make_trader(sf, m, tokens="100")
        rich = await make_trader(sf, m, cash="1000")
        poor = await make_trader(sf, m, cash="5")
        real_decide = gate.decide

        def lenient(*args):  # type: ignore[no-untyped-def]
            verdict = real_decide(*args)
            return gate.GateResult(None, verdict.wallet) if verdict.reason == "INSUFFICIENT_CASH" else verdict

        monkeypatch.setattr(gate, "decide", lenient)
        sell = OrderRequest(m.market_id, Side.SELL, OrderType.LIMIT, Decimal(3), Decimal(10))
        await place_in_uow(sf, seller.user_id, sell)
        buy = OrderRequest(m.market_id, Side.BUY, OrderType.LIMIT, Decimal(1), Decimal(10))
        bid = OrderRequest(m.market_id, Side.BUY, OrderType.LIMIT, Decimal(1), Decimal(9))  # rests: reserves 9
        reqs = [(rich.user_id, buy), (poor.user_id, buy), (rich.user_id, buy), (poor.user_id, bid), (rich.user_id, bid)]
        outcomes = await asyncio.gather(*[place_in_uow(sf, u, r) for u, r in reqs], return_exceptions=True)
        assert any(size > 1 for size in batch_sizes)
        for (user, _), out in zip(reqs, outcomes):
            if user == poor.user_id:
                assert isinstance(out, Conflict) and out.extensions.get("reason") == "INSUFFICIENT_FUNDS", out
            else:
                assert isinstance(out, orders.Placed) and not out.replayed, out
        async with sf() as s:
            rows = (await s.execute(select(Order).where(Order.market_id == m.market_id))).scalars().all()
            assert poor.user_id not in {o.user_id for o in rows}
            assert sorted((o.side.value, o.quantity, o.filled_quantity) for o in rows) == [
                ("BUY", 1, 0),
                ("BUY", 1, 1),
                ("BUY", 1, 1),
                ("SELL", 3, 2),
            ]
            assert (await ledger.total_by_currency(s))[m.quote] == 0
            poor_cash = {b.currency: b for b in await ledger.balances(s, poor.user_id)}[m.quote]
            assert (poor_cash.available, poor_cash.reserved) == (Decimal(5), Decimal(0))
            rich_cash = {b.currency: b for b in await ledger.balances(s, rich.user_id)}[m.quote]
            assert (rich_cash.available, rich_cash.reserved) == (Decimal(1000 - 20 - 9), Decimal(9))


async def test_a_caller_that_goes_away_still_gets_its_order_placed(module_database_url, monkeypatch, batch_sizes):  # type: ignore[no-untyped-def]
    """A placement whose caller is cancelled while it waits in the lane (a client that disconnected) is placed all
    the same, once, and the rest of its batch is answered as usual: the client finds it by its clientOrderId."""
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf, tick="0.1", lot="1", maker_bps=0, taker_bps=0)
        seller = await make_trader(sf, m, tokens="100")
        real = sequencer._together
        started = asyncio.Event()
        go_on = asyncio.Event()

        async def held(session, market_id, batch):  # type: ignore[no-untyped-def]
            started.set()
            await go_on.wait()  # the first batch waits: the next placements queue up in the lane meanwhile
            return await real(session, market_id, batch)

        monkeypatch.setattr(sequencer, "_together", held)
        reqs = [
            OrderRequest(m.market_id, Side.SELL, OrderType.LIMIT, Decimal(q), Decimal(10), None, None, f"gone{q}")
            for q in range(1, 6)
        ]
        first = [asyncio.create_task(place_in_uow(sf, seller.user_id, r)) for r in reqs[:2]]
        await asyncio.wait_for(started.wait(), 10)
        queued = [asyncio.create_task(place_in_uow(sf, seller.user_id, r)) for r in reqs[2:]]
        await asyncio.sleep(0.05)  # they are in the lane, waiting for the batch before them
        queued[0].cancel()
        go_on.set()
        outcomes = await asyncio.gather(*first, *queued, return_exceptions=True)
        assert isinstance(outcomes[2], asyncio.CancelledError), outcomes
        assert all(isinstance(o, orders.Placed) and not o.replayed for i, o in enumerate(outcomes) if i != 2), outcomes
        assert batch_sizes == [2, 3]
        async with sf() as s:
            rows = (await s.execute(select(Order).where(Order.market_id == m.market_id))).scalars().all()
            assert sorted(o.quantity for o in rows) == [1, 2, 3, 4, 5]
        replay = await place_in_uow(sf, seller.user_id, reqs[2])  # the client retries: the order it did not see
        assert replay.replayed and replay.order.quantity == 3
