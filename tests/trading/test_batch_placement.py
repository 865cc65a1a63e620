"""A sequencer batch placed with one read and one write (resolvers/trading/batch.py) decides exactly what placing
its orders one by one decides: the same statuses, fills, refusals (cash, tokens and open sells seen after the
earlier orders of the batch), replays, events (book totals and sequences, trades, order updates), rows, cash and
token legs. Checked on twin markets with twin traders: one gets the script as one batch, the other order by order
(`orders.place_alone`). Also: a batch costs the same few statements whatever its size, and the orders the
in-memory path cannot decide (a walk past the resting orders read, a market with risk limits) are placed by
`orders.place_locked` in the same transaction."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, text

from core.errors import BadUserInput
from models.trading import Order, OrderStatus, OrderType, Side, TimeInForce, Trade
from resolvers import ledger
from resolvers.raw_sql import pg
from resolvers.trading import batch, orders, sequencer
from resolvers.trading.orders import OrderRequest
from tests.trading.factories import make_market, make_trader
from tests.trading.live import committed_sessions

T0 = datetime(2030, 1, 1, tzinfo=UTC)
L, M = OrderType.LIMIT, OrderType.MARKET
B, S = Side.BUY, Side.SELL
# (trader, side, type, quantity, price, time in force, expires after T0 (s), clientOrderId); trader 0-1 sell, 2-3 buy
SCRIPT: list[tuple[int, Side, OrderType, str, str | None, TimeInForce | None, int | None, str | None]] = [
    (0, S, L, "5", "10", None, None, None),  # rests
    (0, S, L, "4", "10", None, None, None),  # 5 + 4 > 8 tokens: refused (open sells of the batch count)
    (2, B, L, "3", "10", None, None, None),  # takes 3 of the first sell
    (3, B, L, "2", "11", None, None, None),  # takes the last 2 at 10: the first sell FILLED
    (3, B, L, "1", "9", None, None, None),  # cash left 4.96 < 9.018: INSUFFICIENT_CASH
    (2, B, L, "2", "9", None, None, None),  # rests, reserves
    (1, S, L, "1", "9", TimeInForce.IOC, None, None),  # takes 1 of the resting buy (paid from RESERVED)
    (1, S, L, "5", "9", None, None, None),  # takes the other 1 (the buy FILLED, its rest released), rests 4
    (2, B, L, "1", "8.5", TimeInForce.FOK, None, None),  # no ask at 8.5: FOK_UNFILLABLE
    (2, B, L, "1", "9.5", None, None, "x"),  # takes 1 at 9
    (2, B, L, "1", "9.5", None, None, "x"),  # the same clientOrderId: a replay of the order above
    (2, B, L, "1", "9.55", None, None, None),  # off the tick: BadUserInput, nothing written
    (0, S, L, "3", "12", None, None, None),  # 8 tokens - 5 pending outgoing = 3: rests
    (0, S, L, "1", "12", None, None, None),  # nothing free: INSUFFICIENT_TOKEN_BALANCE
    (1, B, L, "1", "9", None, None, None),  # its own sell is best: SELF_TRADE_PREVENTED
    (2, B, M, "2", "12", None, None, None),  # MARKET with a cap: takes 2 at 9
    (3, S, L, "1", "13", TimeInForce.GTD, 40, None),  # rests until T0 + 40 s (trader 3 has tokens too)
    (2, B, L, "5", "13", None, None, None),  # at T0 + 60 s: takes 1 at 9, 3 at 12, the GTD sell EXPIRED, rests 1
    (1, S, M, "1", None, None, None, "y"),  # MARKET sell without floor: fills the order above (a maker of the batch)
]
TRADERS = [
    {"tokens": "8"},
    {"tokens": "100"},
    {"cash": "1000"},
    {"cash": "25", "tokens": "5"},
]


Step = tuple[int, Side, OrderType, str, str | None, TimeInForce | None, int | None, str | None]


def _request(market_id: uuid.UUID, script: list[Step], i: int, at: int) -> tuple[int, OrderRequest, datetime]:
    """Step i of `script` as a request placed at T0 + `at` seconds."""
    who, side, type_, qty, price, tif, expires, cid = script[i]
    return (
        who,
        OrderRequest(
            market_id,
            side,
            type_,
            Decimal(qty),
            Decimal(price) if price else None,
            tif,
            T0 + timedelta(seconds=expires) if expires else None,
            cid,
        ),
        T0 + timedelta(seconds=at),
    )


def _random_script(seed: int, n: int) -> tuple[list[Step], list[int]]:
    """`n` random steps over 5 traders (each buys and sells, with little cash and few tokens, so refusals happen),
    every kind of order, reused and invalid clientOrderIds; and their times (GTD orders expire during the run)."""
    import random

    rng = random.Random(seed)
    script: list[Step] = []
    for i in range(n):
        side = rng.choice([B, S])
        kind = rng.choices(["GTC", "IOC", "FOK", "GTD", "MARKET"], [6, 2, 1, 2, 1])[0]
        price = str(Decimal(rng.randint(95, 105)) / 10)
        cid = rng.choice([None, None, f"c{i}", f"c{rng.randrange(max(i, 1))}"])
        if rng.random() < 0.04:
            price = str(Decimal(price) + Decimal("0.05"))  # off the tick
        if kind == "MARKET":
            script.append(
                (rng.randrange(5), side, M, str(rng.randint(1, 6)), price if side is B else None, None, None, cid)
            )
        else:
            expires = i * 2 + rng.randint(1, 12) if kind == "GTD" else None
            script.append((rng.randrange(5), side, L, str(rng.randint(1, 6)), price, TimeInForce(kind), expires, cid))
    return script, [i * 2 for i in range(n)]


RANDOM_TRADERS = [{"cash": str(c), "tokens": str(t)} for c, t in ((60, 10), (200, 4), (35, 25), (500, 15), (0, 30))]


async def _twin(sf: Any, traders: list[dict[str, str]]) -> tuple[Any, list[Any]]:
    m = await make_market(sf, tick="0.1", lot="1", maker_bps=10, taker_bps=20)
    return m, [await make_trader(sf, m, **kw) for kw in traders]


def _normalize(outcome: Any, ids: dict[Any, Any], first_book: int) -> Any:
    """An outcome with the run's ids, times and sequences replaced by script positions / offsets."""
    if isinstance(outcome, Exception):
        return type(outcome).__name__, getattr(outcome, "extensions", {}).get("field")
    o = outcome.order
    events = []
    for channel, e in outcome.events.messages:
        kind = channel.split(":")[-1]
        if kind == "orders":
            events.append((kind, ids[e["id"]], e["status"], e["filled_quantity"], e["reason"], e["reserved_cash"]))
        elif kind == "book":
            events.append((kind, e["sequence"] - first_book, e["bids"], e["asks"]))
        else:
            events.append((kind, e["sequence"], e["takerSide"], e["price"], e["quantity"]))
    # the makers' updates follow the taker's in no particular order (as the makers' UPDATE returns them)
    makers = sorted(e for e in events if e[0] == "orders" and e[1] != ids[o.id])
    events = [e for e in events if e[0] != "orders" or e[1] == ids[o.id]] + makers
    return (ids[o.id], o.status, o.reason, o.filled_quantity, o.reserved_cash, outcome.replayed, events)


async def _state(sf: Any, m: Any, traders: list[Any], ids: dict[Any, Any]) -> Any:
    async with sf() as s:
        rows = (await s.execute(select(Order).where(Order.market_id == m.market_id))).scalars().all()
        trades = (
            (await s.execute(select(Trade).where(Trade.market_id == m.market_id).order_by(Trade.seq))).scalars().all()
        )
        wallets = {t.wallet: k for k, t in enumerate(traders)}
        legs = (
            await s.execute(
                text(
                    "SELECT i.from_wallet, i.to_wallet, i.amount, o.state::text FROM settlement_instructions i "
                    "JOIN trades t ON t.id = i.trade_id JOIN chain_operations o ON o.business_ref = 'settlement:' || i.id "
                    "WHERE t.market_id = :m ORDER BY t.seq"
                ),
                {"m": m.market_id},
            )
        ).all()
        audits = (
            await s.execute(
                text("SELECT target_id FROM audit_log WHERE action = 'order.place' AND target_id = ANY(:ids)"),
                {"ids": [str(o.id) for o in rows]},
            )
        ).all()
        cash = []
        for t in traders:
            bal = {b.currency: b for b in await ledger.balances(s, t.user_id)}.get(m.quote)
            cash.append(None if bal is None else (bal.available, bal.reserved))
        seqs = (
            await s.execute(text("SELECT book_sequence, trade_sequence FROM markets WHERE id = :m"), {"m": m.market_id})
        ).one()
        outgoing = (
            await s.execute(
                text("SELECT wallet, amount FROM settlement_outgoing WHERE token_address = :t ORDER BY wallet"),
                {"t": m.token_address},
            )
        ).all()
        return {
            "orders": sorted(
                (ids[o.id], o.status, o.reason, o.filled_quantity, o.reserved_cash, wallets.get(o.wallet_address))
                for o in rows
            ),
            "trades": [
                (
                    ids[t.maker_order_id],
                    ids[t.taker_order_id],
                    t.price,
                    t.quantity,
                    t.maker_fee,
                    t.taker_fee,
                    t.market_sequence,
                )
                for t in trades
            ],
            "legs": [(wallets[a], wallets[b], amount, state) for a, b, amount, state in legs],
            "audits": Counter(ids[uuid.UUID(a)] for (a,) in audits),
            "cash": cash,
            "sequences": tuple(seqs),
            "outgoing": sorted((wallets[w], a) for w, a in outgoing),
            "ledger": (await ledger.total_by_currency(s))[m.quote],
        }


def _ids(outcomes: list[Any]) -> dict[Any, Any]:
    ids: dict[Any, Any] = {}
    for i, out in enumerate(outcomes):
        if isinstance(out, orders.Placed) and out.order.id not in ids:
            ids[out.order.id] = i
    return ids


async def _both_ways(
    sf: Any, script: list[Step], times: list[int], traders: list[dict[str, str]], limits: str | None = None
) -> tuple[list[Any], list[Any]]:
    """`script` as one sequencer batch on one market and order by order on its twin (both with the risk `limits`,
    columns=values of market_risk_limits); the normalized outcomes of both, after checking that they and the stored
    state are the same."""
    m1, t1 = await _twin(sf, traders)
    m2, t2 = await _twin(sf, traders)
    if limits:
        columns, values = zip(*(kv.split("=") for kv in limits.split(",")))
        async with sf() as s:
            for m in (m1, m2):
                await s.execute(
                    text(
                        f"INSERT INTO market_risk_limits (market_id, {', '.join(columns)}) VALUES (:m, {', '.join(values)})"
                    ),
                    {"m": m.market_id},
                )
            await s.commit()
    jobs = []
    for i in range(len(script)):
        who, req, now = _request(m1.market_id, script, i, times[i])
        jobs.append(SimpleNamespace(user_id=t1[who].user_id, req=req, request_id=f"r{i}", now=now))
    async with sequencer._session(sf.kw["bind"]) as session:
        batched = await sequencer._together(session, m1.market_id, jobs)
    alone: list[Any] = []
    for i in range(len(script)):
        who, req, now = _request(m2.market_id, script, i, times[i])
        async with sf() as session:
            try:
                alone.append(await orders.place_alone(session, t2[who].user_id, req, request_id=f"r{i}", now=now))
            except (BadUserInput, orders.ClientOrderIdReused) as exc:
                alone.append(exc)

    def first_book(outcomes: list[Any]) -> int:
        return min(
            (
                e["sequence"]
                for p in outcomes
                if isinstance(p, orders.Placed)
                for ch, e in p.events.messages
                if ch.endswith(":book")
            ),
            default=0,
        )

    ids1, ids2 = _ids(batched), _ids(alone)
    got = [_normalize(o, ids1, first_book(batched)) for o in batched]
    want = [_normalize(o, ids2, first_book(alone)) for o in alone]
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, (i, script[i])
    assert await _state(sf, m1, t1, ids1) == await _state(sf, m2, t2, ids2)
    return batched, alone


async def test_a_batch_decides_what_one_by_one_decides(module_database_url):  # type: ignore[no-untyped-def]
    times = [i * 2 if i < 17 else 60 for i in range(len(SCRIPT))]
    async with committed_sessions(module_database_url) as sf:
        _, alone = await _both_ways(sf, SCRIPT, times, TRADERS)
    # the script does what its comments say (so the comparison covers those paths)
    statuses = [None if isinstance(o, Exception) else (o.order.status, o.order.reason) for o in alone]
    assert statuses[1] == (OrderStatus.REJECTED, "INSUFFICIENT_TOKEN_BALANCE")
    assert statuses[4] == (OrderStatus.REJECTED, "INSUFFICIENT_CASH")
    assert statuses[8] == (OrderStatus.CANCELED, "FOK_UNFILLABLE")
    assert alone[10].replayed and alone[10].order.id == alone[9].order.id
    assert statuses[11] is None
    assert statuses[12] == (OrderStatus.NEW, None) and statuses[13][1] == "INSUFFICIENT_TOKEN_BALANCE"
    assert statuses[14] == (OrderStatus.CANCELED, "SELF_TRADE_PREVENTED")
    assert statuses[15] == (OrderStatus.FILLED, None)
    assert any(m.get("status") == "EXPIRED" for _, m in alone[17].events.messages)
    assert statuses[17] == (OrderStatus.PARTIALLY_FILLED, None) and statuses[18] == (OrderStatus.FILLED, None)


LIMITS = "price_band_bps=400,reference_price=10,max_order_quantity=5,max_order_notional=45,daily_notional_limit=90"


@pytest.mark.parametrize(
    "seed,book_rows,limits", [(1, 64, None), (2, 64, None), (3, 3, None), (4, 2, None), (5, 64, LIMITS), (6, 1, LIMITS)]
)
async def test_random_batches_decide_what_one_by_one_decides(module_database_url, monkeypatch, seed, book_rows, limits):  # type: ignore[no-untyped-def]
    """With few resting orders read per side (book_rows 2-3), orders often walk past them: the batch mixes the
    in-memory path and place_locked in one transaction, re-reading after each. With risk limits (a price band around
    the last trade, maximum quantity and value, a daily value per investor), the refusals and the MARKET orders'
    band edges too."""
    monkeypatch.setattr(batch, "BOOK_ROWS", book_rows)
    alone_in_batch: list[Any] = []
    real = orders.place_locked

    async def spy(*a, **kw):  # type: ignore[no-untyped-def]
        alone_in_batch.append(a[2])
        return await real(*a, **kw)

    monkeypatch.setattr(orders, "place_locked", spy)
    script, times = _random_script(seed, 60)
    async with committed_sessions(module_database_url) as sf:
        batched, _ = await _both_ways(sf, script, times, RANDOM_TRADERS, limits)
    kinds = Counter(
        "error" if isinstance(o, Exception) else ("replay" if o.replayed else o.order.status.value) for o in batched
    )
    assert kinds["FILLED"] and kinds["REJECTED"] and kinds["NEW"] + kinds["PARTIALLY_FILLED"], kinds
    if limits:
        reasons = Counter(o.order.reason for o in batched if isinstance(o, orders.Placed))
        assert reasons["PRICE_OUTSIDE_BAND"] and reasons["MAX_ORDER_QUANTITY_EXCEEDED"], reasons
        assert reasons["DAILY_NOTIONAL_LIMIT_EXCEEDED"] and reasons["MAX_ORDER_NOTIONAL_EXCEEDED"], reasons
    # replays always go to place_locked (and so do the one-by-one twin's 60); walks past the rows read only with few
    batch_side = len(alone_in_batch) - len(script)
    assert kinds["replay"] <= batch_side < len(script) // 2
    if book_rows < 5:
        assert batch_side > kinds["replay"]


async def _count_statements(sf: Any, market_id: uuid.UUID, jobs: list[Any]) -> tuple[list[Any], int]:
    seen: list[str] = []
    async with sequencer._session(sf.kw["bind"]) as session:
        conn = await pg(session)
        logger = lambda record: seen.append(record.query)  # noqa: E731
        conn.add_query_logger(logger)
        try:
            outcomes = await sequencer._together(session, market_id, jobs)
        finally:
            conn.remove_query_logger(logger)
    return outcomes, len(seen)


async def test_a_batch_costs_the_same_statements_whatever_its_size(module_database_url, monkeypatch):  # type: ignore[no-untyped-def]
    calls: list[Any] = []
    real = orders.place_locked

    async def spy(*a, **kw):  # type: ignore[no-untyped-def]
        calls.append(a)
        return await real(*a, **kw)

    monkeypatch.setattr(orders, "place_locked", spy)
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf, tick="0.1", lot="1")
        seller = await make_trader(sf, m, tokens="1000")
        buyer = await make_trader(sf, m, cash="100000")

        def jobs(n: int) -> list[Any]:
            return [
                SimpleNamespace(
                    user_id=(seller if i % 2 == 0 else buyer).user_id,
                    req=OrderRequest(m.market_id, S if i % 2 == 0 else B, L, Decimal(1), Decimal(10)),
                    request_id=None,
                    now=None,
                )
                for i in range(n)
            ]

        await _count_statements(sf, m.market_id, jobs(2))  # the ledger accounts are created once, here
        small, small_n = await _count_statements(sf, m.market_id, jobs(2))
        large, large_n = await _count_statements(sf, m.market_id, jobs(40))
        assert all(
            isinstance(o, orders.Placed) and o.order.status is OrderStatus.FILLED for o in small[1::2] + large[1::2]
        )
        assert small_n == large_n <= 6  # lock, read, write, book sequence (and the transaction's BEGIN)
        assert calls == []


async def test_a_walk_past_the_rows_read_and_a_position_limit_place_locked(module_database_url, monkeypatch):  # type: ignore[no-untyped-def]
    calls: list[Any] = []
    real = orders.place_locked

    async def spy(*a, **kw):  # type: ignore[no-untyped-def]
        calls.append(a[2].quantity)
        return await real(*a, **kw)

    monkeypatch.setattr(orders, "place_locked", spy)
    async with committed_sessions(module_database_url) as sf:
        m = await make_market(sf, tick="0.1", lot="1")
        seller = await make_trader(sf, m, tokens="1000")
        buyer = await make_trader(sf, m, cash="100000")
        n = batch.BOOK_ROWS + 6
        sells = [
            SimpleNamespace(
                user_id=seller.user_id,
                req=OrderRequest(m.market_id, S, L, Decimal(1), Decimal(10) + Decimal(i % 5) / 10),
                request_id=None,
                now=None,
            )
            for i in range(n)
        ]
        async with sequencer._session(sf.kw["bind"]) as session:
            assert all(isinstance(o, orders.Placed) for o in await sequencer._together(session, m.market_id, sells))
        assert calls == []
        buys = [
            SimpleNamespace(
                user_id=buyer.user_id,
                req=OrderRequest(m.market_id, B, L, Decimal(q), Decimal(11)),
                request_id=None,
                now=None,
            )
            for q in (3, n - 4, 1, 1)  # in memory; past the rows read (place_locked); in memory again; nothing left
        ]
        async with sequencer._session(sf.kw["bind"]) as session:
            out = await sequencer._together(session, m.market_id, buys)
        assert calls == [n - 4]
        assert [(o.order.status, o.order.filled_quantity) for o in out] == [
            (OrderStatus.FILLED, 3),
            (OrderStatus.FILLED, n - 4),
            (OrderStatus.FILLED, 1),
            (OrderStatus.NEW, 0),
        ]
        async with sf() as s:
            prices = [
                t.price
                for t in (await s.execute(select(Trade).where(Trade.market_id == m.market_id).order_by(Trade.seq)))
                .scalars()
                .all()
            ]
            assert prices == sorted(prices) and len(prices) == n  # best price first, every sell once
            await s.execute(
                text(
                    "INSERT INTO market_risk_limits (market_id, max_order_quantity, updated_at) VALUES (:m, 5, now())"
                ),
                {"m": m.market_id},
            )
            await s.commit()
        calls.clear()
        limited = [
            SimpleNamespace(
                user_id=seller.user_id,
                req=OrderRequest(m.market_id, S, L, Decimal(q), Decimal(12)),
                request_id=None,
                now=None,
            )
            for q in (1, 9)
        ]
        async with sequencer._session(sf.kw["bind"]) as session:
            out = await sequencer._together(session, m.market_id, limited)
        assert calls == []  # the maximum quantity is checked in memory
        assert [o.order.reason for o in out] == [None, "MAX_ORDER_QUANTITY_EXCEEDED"]
        async with sf() as s:  # a position limit: its check takes its own lock and reads (place_locked)
            await s.execute(
                text("UPDATE market_risk_limits SET max_position = 100 WHERE market_id = :m"), {"m": m.market_id}
            )
            await s.commit()
        async with sequencer._session(sf.kw["bind"]) as session:
            out = await sequencer._together(session, m.market_id, limited)
        assert calls == [1, 9]
        assert [o.order.reason for o in out] == [None, "MAX_ORDER_QUANTITY_EXCEEDED"]
