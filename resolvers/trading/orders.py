"""Placing and canceling orders: validation, idempotency per (user, clientOrderId), the compliance gate, matching
under the market lock, settlement and reservations, all in one transaction; market data published after commit.

Cash: the gate checks that AVAILABLE covers `price x quantity x (1 + max fee)` (settlement.buy_reservation). Fills
of an incoming buy are paid from AVAILABLE; the part that rests reserves its own `buy_reservation` (AVAILABLE ->
RESERVED), which its later fills consume and which is released when it stops being open. If another market spent
the cash in between, the ledger refuses and the placement fails with CONFLICT (reason INSUFFICIENT_FUNDS), changing
nothing. MARKET orders never rest (IOC, or FOK); a MARKET buy must carry `price` as its price cap, which bounds both
the fills and the cash check. A MARKET sell may carry a floor. Sells reserve token balance implicitly: the gate
subtracts open sells and unsettled outgoing transfers from the indexed balance.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime
from decimal import Decimal, localcontext
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, InvalidTransition, NotFound
from core.transactions import transient_retry
from models.trading import MarketStatus, OrderStatus, OrderType, Side, TimeInForce
from resolvers import ledger, unit_of_work
from resolvers.raw_sql import pg
from resolvers.trading import book, gate, market_data, risk, sequencer
from resolvers.trading.book import MarketSpec
from resolvers.trading.market_data import Events
from resolvers.trading.matching import Incoming
from resolvers.trading.settlement import (
    TRADES_CTE,
    PricedFill,
    buy_reservation,
    buyer_cost,
    notional_of,
    price_fill,
    release_reservation,
    settle_movement,
    settled,
    trades_params,
)

MAX_CLIENT_ORDER_ID = 64


@dataclass(frozen=True)
class OrderRequest:
    market_id: uuid.UUID
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    time_in_force: TimeInForce | None = None
    expires_at: datetime | None = None
    client_order_id: str | None = None


@dataclass(slots=True)
class OrderView:
    id: uuid.UUID
    seq: int
    market_id: uuid.UUID
    user_id: uuid.UUID
    client_order_id: str | None
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: Decimal | None
    quantity: Decimal
    filled_quantity: Decimal
    status: OrderStatus
    reason: str | None
    expires_at: datetime | None
    wallet_address: str | None
    reserved_cash: Decimal
    created_at: datetime
    updated_at: datetime

    def event(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


VIEW_SQL = ", ".join(f.name for f in fields(OrderView))  # the column names are the field names


def _view(r: Any) -> OrderView:
    """An OrderView from a raw row of VIEW_SQL (asyncpg returns enums as str)."""
    return OrderView(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        Side(r[5]),
        OrderType(r[6]),
        TimeInForce(r[7]),
        r[8],
        r[9],
        r[10],
        OrderStatus(r[11]),
        r[12],
        r[13],
        r[14],
        r[15],
        r[16],
        r[17],
    )


_BY_CLIENT_ID = f"SELECT {VIEW_SQL} FROM orders WHERE user_id = $1 AND client_order_id = $2"
_BY_ID = f"SELECT {VIEW_SQL} FROM orders WHERE id = $1"
# the incoming order is inserted once matching has decided its state (under the lock, so its seq still gives it
# time priority), in the same statement as the rows that reference it (trades) or that describe it (audit)
_ORDER_CTE = f"""
WITH o AS (INSERT INTO orders (id, market_id, user_id, client_order_id, side, type, time_in_force, price, quantity,
                               filled_quantity, status, reason, expires_at, wallet_address, reserved_cash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING {VIEW_SQL})"""
# a rejection: the order and its audit row
_INSERT = (
    _ORDER_CTE
    + """,
     a AS (INSERT INTO audit_log (actor_id, action, target_type, target_id, request_id, details)
           VALUES ($3, 'order.place', 'order', $1::text, $16, $17))
SELECT * FROM o"""
)
# an order that changed no maker (it rests, or found nothing to take): the order, its audit row, the investor's
# daily order value (when the market limits it: $19 day, $20 value added) and (when it rests, $18) the market's next
# book sequence with the totals of the changed levels ($21, $22). Every part of one statement sees the snapshot from
# before it, so the totals do not include the order itself: _execute adds what rests.
_INSERT_AND_FINAL = (
    _ORDER_CTE
    + """,
     a AS (INSERT INTO audit_log (actor_id, action, target_type, target_id, request_id, details)
           VALUES ($3, 'order.place', 'order', $1::text, $16, $17)),
     u AS (INSERT INTO investor_daily_notional (market_id, user_id, day, notional)
           SELECT $2, $3, $19::date, $20::numeric WHERE $20::numeric IS NOT NULL
           ON CONFLICT (market_id, user_id, day)
           DO UPDATE SET notional = investor_daily_notional.notional + EXCLUDED.notional),
     s AS (UPDATE markets SET book_sequence = book_sequence + 1 WHERE id = $2 AND $18 RETURNING book_sequence),
     l AS (SELECT array_agg(g.side::text) AS sides, array_agg(g.price) AS prices, array_agg(g.qty) AS qtys FROM (
               SELECT r.side, r.price, sum(r.quantity - r.filled_quantity) AS qty FROM orders r
               WHERE r.market_id = $2 AND r.status IN ('NEW', 'PARTIALLY_FILLED')
                 AND (r.side, r.price) IN (SELECT * FROM unnest($21::order_side[], $22::numeric[]))
               GROUP BY r.side, r.price) g){cash}
SELECT o.*, (SELECT book_sequence FROM s) AS book_sequence, l.sides, l.prices, l.qtys FROM o, l"""
)
# a resting buy: with its reservation (the ledger's CTEs, $23..)
_INSERT_AND_FINAL_CASH = _INSERT_AND_FINAL.replace("{cash}", "," + ledger.movements_cte(23))
_INSERT_AND_FINAL = _INSERT_AND_FINAL.replace("{cash}", "")
# an order that changed makers: the order and its trades (with their token legs, settlement.TRADES_CTE; $16 the
# trades' time) and the cash they move (the ledger's CTEs, $32..: the trades' settlement, the reservation of what
# rests of a buy, the release of what finished maker buys still hold), their (seq, market sequence) in fill order
_TAKER_AND_TRADES = (
    _ORDER_CTE
    + ","
    + TRADES_CTE
    + "{cash}"
    + """
SELECT o.*, x.ids AS trade_ids, x.seqs AS trade_seqs, x.market_seqs AS trade_market_seqs FROM o, (
    SELECT array_agg(t.id ORDER BY t.seq) AS ids, array_agg(t.seq ORDER BY t.seq) AS seqs,
           array_agg(t.market_sequence ORDER BY t.seq) AS market_seqs FROM t) x"""
)
_TAKER_AND_TRADES_CASH = _TAKER_AND_TRADES.replace("{cash}", "," + ledger.movements_cte(32))
_TAKER_AND_TRADES = _TAKER_AND_TRADES.replace("{cash}", "")
# then, once the cash has moved (ledger), the makers' update, the order's audit row, the investor's daily order value
# (when the market limits it: $9 day, $10 value added), the market's next book sequence and the changed levels'
# totals, in one round trip. Every part of one statement sees the same snapshot, so the level totals here are from
# before the makers' update (and after the taker's insert, an earlier statement); _execute subtracts what the update
# takes off each level (fills, expired remainders).
_MAKERS_AND_FINAL = f"""
WITH u AS (UPDATE orders o SET filled_quantity = coalesce(x.filled, o.filled_quantity), status = x.status,
                               reason = x.reason, reserved_cash = x.reserved, updated_at = $16
           FROM unnest($11::uuid[], $12::numeric[], $13::order_status[], $14::varchar[], $15::numeric[])
                AS x(id, filled, status, reason, reserved)
           WHERE o.id = x.id RETURNING {", ".join("o." + f.name for f in fields(OrderView))}),
     a AS (INSERT INTO audit_log (actor_id, action, target_type, target_id, request_id, details)
           VALUES ($4, 'order.place', 'order', $5, $6, $7)),
     d AS (INSERT INTO investor_daily_notional (market_id, user_id, day, notional)
           SELECT $1, $4, $9::date, $10::numeric WHERE $10::numeric IS NOT NULL
           ON CONFLICT (market_id, user_id, day)
           DO UPDATE SET notional = investor_daily_notional.notional + EXCLUDED.notional),
     s AS (UPDATE markets SET book_sequence = book_sequence + 1 WHERE id = $1 AND $8 RETURNING book_sequence),
     l AS (SELECT array_agg(g.side::text) AS sides, array_agg(g.price) AS prices, array_agg(g.qty) AS qtys FROM (
               SELECT o.side, o.price, sum(o.quantity - o.filled_quantity) AS qty FROM orders o
               WHERE o.market_id = $1 AND o.status IN ('NEW', 'PARTIALLY_FILLED')
                 AND (o.side, o.price) IN (SELECT * FROM unnest($2::order_side[], $3::numeric[]))
               GROUP BY o.side, o.price) g)
SELECT u.*, (SELECT book_sequence FROM s) AS book_sequence, l.sides, l.prices, l.qtys FROM u, l"""


@dataclass
class Placed:
    order: OrderView
    events: Events
    replayed: bool = False  # an earlier order with the same clientOrderId


def utcnow() -> datetime:
    return datetime.now(UTC)


def risk_day(now: datetime) -> date:
    """The UTC day an order's value counts on (the daily notional limit)."""
    return now.astimezone(UTC).date()


MAX_AMOUNT = Decimal("1e18")  # Numeric(38, 18) holds 20 integer digits; products must stay in range


def _multiple(value: Decimal, step: Decimal) -> bool:
    with localcontext(prec=100):
        return (value % step) == 0


def validate(req: OrderRequest, market: MarketSpec, now: datetime) -> TimeInForce:
    if not req.quantity.is_finite() or not 0 < req.quantity < MAX_AMOUNT:
        raise BadUserInput("quantity must be positive and below 1e18", field="quantity")
    if not _multiple(req.quantity, market.lot_size):
        raise BadUserInput(
            f"quantity must be a multiple of the lot size {market.lot_size.normalize()}", field="quantity"
        )
    if req.price is not None and (not req.price.is_finite() or not 0 < req.price < MAX_AMOUNT):
        raise BadUserInput("price must be positive and below 1e18", field="price")
    if req.price is not None and not _multiple(req.price, market.tick_size):
        raise BadUserInput(f"price must be a multiple of the tick size {market.tick_size.normalize()}", field="price")
    if req.type is OrderType.LIMIT and req.price is None:
        raise BadUserInput("LIMIT orders need a price", field="price")
    if req.type is OrderType.MARKET and req.side is Side.BUY and req.price is None:
        raise BadUserInput("MARKET buys need a price cap (price) to bound the cash reservation", field="price")
    tif = req.time_in_force or (TimeInForce.GTC if req.type is OrderType.LIMIT else TimeInForce.IOC)
    if req.type is OrderType.MARKET and tif not in (TimeInForce.IOC, TimeInForce.FOK):
        raise BadUserInput("MARKET orders are IOC or FOK", field="timeInForce")
    if tif is TimeInForce.GTD:
        if req.expires_at is None or req.expires_at <= now:
            raise BadUserInput("GTD orders need expiresAt in the future", field="expiresAt")
    elif req.expires_at is not None:
        raise BadUserInput("expiresAt applies to GTD orders only", field="expiresAt")
    if req.price is not None and notional_of(req.price, req.quantity) >= MAX_AMOUNT:
        raise BadUserInput("order value too large", field="quantity")
    if req.price is not None and notional_of(req.price, req.quantity) < market.min_notional:
        raise BadUserInput(
            f"order value is below the minimum notional {market.min_notional.normalize()}", field="quantity"
        )
    if req.client_order_id is not None and not 0 < len(req.client_order_id) <= MAX_CLIENT_ORDER_ID:
        raise BadUserInput(f"clientOrderId must have 1 to {MAX_CLIENT_ORDER_ID} characters", field="clientOrderId")
    return tif


async def _existing(session: AsyncSession, user_id: uuid.UUID, client_order_id: str | None) -> OrderView | None:
    if client_order_id is None:
        return None
    row = await (await pg(session)).fetchrow(_BY_CLIENT_ID, user_id, client_order_id)
    return None if row is None else _view(row)


def _audit_details(market_id: uuid.UUID, status: OrderStatus, reason: str | None) -> str:
    return json.dumps({"market": str(market_id), "status": status.value, "reason": reason})


async def place_order(
    session: AsyncSession,
    user_id: uuid.UUID,
    req: OrderRequest,
    *,
    request_id: str | None = None,
    now: datetime | None = None,
) -> Placed:
    """Place one order and commit. Returns the order as stored (REJECTED with a reason if the gate refused).

    Inside a unit of work on a session bound to an engine (every placeOrder mutation), the order goes through the
    market's sequencer (resolvers/trading/sequencer.py): concurrent placements of one market in this process are
    matched one after the other in one transaction under one market lock and committed together (group commit);
    the caller's session is not used. Elsewhere (tests on a shared connection, scripts) it runs alone on `session`.
    Both run `place_locked` for each order, so the rules are the same."""
    if sequencer.applies(session):
        return await sequencer.submit(session, user_id, req, request_id, now)
    return await place_alone(session, user_id, req, request_id=request_id, now=now)


@transient_retry
async def place_alone(
    session: AsyncSession,
    user_id: uuid.UUID,
    req: OrderRequest,
    *,
    request_id: str | None = None,
    now: datetime | None = None,
) -> Placed:
    """One placement in its own transaction on `session`: market lock, `place_locked`, commit (a replay rolls
    back: it wrote nothing)."""
    ledger.begin_accounts(session)
    await book.lock_market(session, req.market_id)  # first: everything read after it is current
    try:
        placed = await place_locked(session, user_id, req, request_id=request_id, now=now or utcnow())
    except asyncpg.UniqueViolationError as exc:
        replay = await replay_after_conflict(session, exc, user_id, req.client_order_id)
        return Placed(replay, Events(), replayed=True)
    if placed.replayed:
        await session.rollback()
    elif unit_of_work.in_unit(session):
        await unit_of_work.commit(session)  # the unit commits later: the accounts it created are not known committed
    else:
        await session.commit()
        ledger.accounts_committed(session)
    return placed


async def replay_after_conflict(
    session: AsyncSession, exc: asyncpg.UniqueViolationError, user_id: uuid.UUID, client_order_id: str | None
) -> OrderView:
    """The same clientOrderId placed concurrently in another market: the first one wins (roll back, return it)."""
    if exc.constraint_name != "uq_orders_user_client_order_id":
        raise exc
    await session.rollback()
    replay = await _existing(session, user_id, client_order_id)
    if replay is None:
        raise exc
    return replay


async def place_locked(
    session: AsyncSession, user_id: uuid.UUID, req: OrderRequest, *, request_id: str | None, now: datetime
) -> Placed:
    """Place one order in the session's transaction, under the market lock the caller holds; neither commits nor
    rolls back. NotFound / BadUserInput are raised before anything is written (the transaction stays usable); a
    replay (same clientOrderId) writes nothing.

    Hot path (the market lock is held until the commit, so its round trips bound a market's throughput): raw
    asyncpg on the session's connection and transaction (resolvers/raw_sql.py); one read for the market,
    idempotency and the gate; writes return the rows they change, so nothing is re-read."""
    conn = await pg(session)
    found = await gate.read(session, req.market_id, user_id, req.side, req.client_order_id, now, req.price)
    market = found.market
    if market is None:
        raise NotFound("market not found", field="marketId")
    # idempotency before validation: a retry gets the stored order even when the request would no longer validate
    # (a GTD order's expiresAt has passed since, the lot size changed)
    if found.existing is not None:
        return Placed(_view(await conn.fetchrow(_BY_ID, found.existing)), Events(), replayed=True)
    try:
        tif = validate(req, market, now)
    except BadUserInput:
        replay = await _existing(session, user_id, req.client_order_id)  # stored in another market
        if replay is None:
            raise
        return Placed(replay, Events(), replayed=True)
    limits = found.limits
    if (
        market.status is MarketStatus.HALTED
        and limits.resume_due(now)
        and await risk.resume_if_due(conn, market.id, now)
    ):
        market = replace(market, status=MarketStatus.OPEN)  # a circuit-breaker halt that is over
    reservation = buy_reservation(market, req.price, req.quantity) if req.side is Side.BUY and req.price else Decimal(0)
    verdict = gate.decide(market, found.rows, req.side, req.quantity, reservation, now)
    checked = risk.Verdict(None, req.price, req.price)  # no limits: the order as given
    if verdict.reason is None and limits.present:
        checked = risk.check(limits, req.side, req.type, req.quantity, req.price, market.tick_size)
        reason = checked.reason or await risk.position_refusal(conn, limits, market, user_id, req.side, req.quantity)
        verdict = gate.GateResult(reason, verdict.wallet) if reason else verdict
    order_id = uuid.uuid4()
    events = Events()
    insert = (
        order_id,
        market.id,
        user_id,
        req.client_order_id,
        req.side.value,
        req.type.value,
        tif.value,
        req.price,
        req.quantity,
    )
    if verdict.reason is not None:
        view = _view(
            await conn.fetchrow(
                _INSERT,
                *insert,
                Decimal(0),
                OrderStatus.REJECTED.value,
                verdict.reason,
                req.expires_at,
                verdict.wallet,
                Decimal(0),
                request_id,
                _audit_details(market.id, OrderStatus.REJECTED, verdict.reason),
            )
        )
        events.add(market_data.orders_channel(user_id), view.event())
    else:
        taker = Incoming(order_id, user_id, req.side, req.type, tif, req.price, req.quantity, 0, req.expires_at)
        view = await _execute(
            session, conn, market, taker, insert, verdict.wallet, request_id, now, events, limits, checked, found.book
        )
    return Placed(view, events)


async def _write(
    session: AsyncSession, conn: asyncpg.Connection, sql: str, currency: str, cash: list[ledger.Movement], *args: Any
) -> Any:
    """One row of `sql`, which carries the ledger's CTEs when `cash` is not empty (their parameters follow `args`);
    a movement that takes a user account below zero is the ledger's CONFLICT (INSUFFICIENT_FUNDS), as `ledger.post`
    answers it (the transaction is then aborted: the caller rolls back)."""
    if not cash:
        return await conn.fetchrow(sql, *args)
    await ledger.ensure_accounts(session, currency, [ref for m in cash for ref, _ in m.legs])
    try:
        return await conn.fetchrow(sql, *args, *ledger.movements_params(currency, cash))
    except asyncpg.CheckViolationError as exc:
        refused = ledger.refusal(exc, currency)
        if refused is None:
            raise
        raise refused from exc


async def _execute(
    session: AsyncSession,
    conn: asyncpg.Connection,
    market: MarketSpec,
    taker: Incoming[uuid.UUID],
    insert: tuple[Any, ...],
    taker_wallet: str | None,
    request_id: str | None,
    now: datetime,
    events: Events,
    limits: risk.Limits,
    checked: risk.Verdict,
    prefetched: book.Prefetched | None = None,
) -> OrderView:
    """Match the taker (a MARKET order within the price band; stopped by the circuit breaker), store it with its
    trades, settle their cash (at each side's fee tier), update the makers, audit, count the daily order value, bump
    the book sequence; add the events (trades, book, orders); return the taker as stored.

    Round trips after the gate's read: an order that changed no maker, one (plus the reservation of a resting buy);
    otherwise the order with its trades, the ledger's movements, the makers with the rest."""
    matcher = risk.with_price(taker, checked.match_price) if taker.type is OrderType.MARKET else taker
    result, resting = await book.match_against_book(session, market.id, matcher, now, prefetched)
    tripped = risk.breaker_cut(limits, taker, result)
    taker_fee_bps = limits.fees(taker.owner, market.maker_fee_bps, market.taker_fee_bps)[1]
    opposite = Side.SELL if taker.side is Side.BUY else Side.BUY
    buyer_is_taker = taker.side is Side.BUY
    held = Decimal(0)
    levels: set[tuple[Side, Decimal]] = set()
    if result.rests:
        assert taker.price is not None
        levels.add((taker.side, taker.price))
        if buyer_is_taker:  # only the resting part holds cash; the fills are paid from AVAILABLE
            held = buy_reservation(market, taker.price, result.remaining)
    cash: list[ledger.Movement] = []  # in one currency, written with the order's statement
    if held:
        cash.append(ledger.reserve_movement(taker.owner, held, f"order:{taker.id}:reserve"))
    stored = (*insert, result.filled, result.status.value, result.reason, taker.expires_at, taker_wallet, held)
    counted = result.filled + (result.remaining if result.rests else 0)
    value = (
        notional_of(checked.value_price, counted)
        if limits.daily is not None and checked.value_price is not None and counted
        else None
    )
    audit = _audit_details(market.id, result.status, result.reason)
    ordered = sorted(levels, key=lambda x: (x[0].value, x[1]))
    if not result.fills and not result.expired_makers:  # no maker changed: one statement
        row = await _write(
            session,
            conn,
            _INSERT_AND_FINAL_CASH if cash else _INSERT_AND_FINAL,
            market.quote_currency,
            cash,
            *stored,
            request_id,
            audit,
            bool(levels),
            risk_day(now),
            value,
            [s.value for s, _ in ordered],
            [p for _, p in ordered],
        )
        taker_view = _view(row)
        if tripped:  # the breaker cut every fill (FOK)
            await risk.trip(conn, limits, market.id, now, request_id, taker.id)
        if levels:
            before = dict(zip(zip(row["sides"] or [], row["prices"] or []), row["qtys"] or []))
            with localcontext(prec=100):  # the statement's level read does not see the order it inserts
                totals = [
                    (s, p, before.get((s.value, p), Decimal(0)) + (result.remaining if s is taker.side else 0))
                    for s, p in ordered
                ]
            events.add(
                market_data.book_channel(market.id), market_data.book_event(market.id, row["book_sequence"], totals)
            )
        events.add(market_data.orders_channel(taker_view.user_id), taker_view.event())
        return taker_view
    # makers: (id, filled or None to keep, status, reason, reserved cash left)
    makers: list[tuple[Any, Decimal | None, str, str | None, Decimal]] = []
    for maker_id in result.expired_makers:
        r = resting[maker_id]
        levels.add((opposite, r.price))
        if opposite is Side.BUY and r.reserved_cash > 0:
            cash.append(ledger.release_movement(r.user_id, r.reserved_cash, f"order:{maker_id}:release"))
        makers.append((maker_id, None, OrderStatus.EXPIRED.value, "GTD_EXPIRED", Decimal(0)))
    fills: list[PricedFill] = []
    for fill in result.fills:
        r = resting[fill.maker_id]
        buyer_id, seller_id = (taker.owner, r.user_id) if buyer_is_taker else (r.user_id, taker.owner)
        buyer_wallet, seller_wallet = (taker_wallet, r.wallet) if buyer_is_taker else (r.wallet, taker_wallet)
        priced = price_fill(
            market,
            maker_order_id=fill.maker_id,
            buyer_id=buyer_id,
            seller_id=seller_id,
            price=fill.price,
            quantity=fill.quantity,
            buyer_wallet=buyer_wallet,
            seller_wallet=seller_wallet,
            maker_fee_bps=limits.fees(r.user_id, market.maker_fee_bps, market.taker_fee_bps)[0],
            taker_fee_bps=taker_fee_bps,
        )
        fills.append(priced)
        cash.append(settle_movement(market, priced, taker.side))
        levels.add((opposite, r.price))
        maker_reserved = r.reserved_cash - (buyer_cost(priced, taker.side) if not buyer_is_taker else 0)
        if fill.maker_remaining == 0:
            if opposite is Side.BUY and maker_reserved > 0:  # what the filled buy still holds (rounding)
                cash.append(ledger.release_movement(r.user_id, maker_reserved, f"order:{fill.maker_id}:release"))
            makers.append((fill.maker_id, r.quantity, OrderStatus.FILLED.value, None, Decimal(0)))
        else:
            makers.append(
                (
                    fill.maker_id,
                    r.quantity - fill.maker_remaining,
                    OrderStatus.PARTIALLY_FILLED.value,
                    None,
                    maker_reserved,
                )
            )
    row = await _write(
        session,
        conn,
        _TAKER_AND_TRADES_CASH if cash else _TAKER_AND_TRADES,
        market.quote_currency,
        cash,
        *stored,
        now,
        *trades_params(market, fills),
    )
    taker_view = _view(row)
    sequences = dict(zip(row["trade_ids"] or [], zip(row["trade_seqs"] or [], row["trade_market_seqs"] or [])))
    if tripped:
        await risk.trip(conn, limits, market.id, now, request_id, taker.id)
    for priced in fills:
        seq, market_sequence = sequences[priced.trade_id]
        trade = settled(market.id, priced, taker.side, now, seq, market_sequence)
        events.add(market_data.trades_channel(market.id), trade.event())
    ordered = sorted(levels, key=lambda x: (x[0].value, x[1]))
    final = (
        market.id,
        [s.value for s, _ in ordered],
        [p for _, p in ordered],
        taker.owner,
        str(taker.id),
        request_id,
        audit,
        True,
        risk_day(now),
        value,
    )
    # makers changed, so levels changed: one statement, the totals corrected for the makers' update
    rows = await conn.fetch(_MAKERS_AND_FINAL, *final, *(list(c) for c in zip(*makers)), now)
    taken: dict[tuple[str, Decimal], Decimal] = {}
    for fill in result.fills:
        key = (opposite.value, resting[fill.maker_id].price)
        taken[key] = taken.get(key, Decimal(0)) + fill.quantity
    for maker_id in result.expired_makers:
        r = resting[maker_id]
        key = (opposite.value, r.price)
        taken[key] = taken.get(key, Decimal(0)) + (r.quantity - r.filled)
    sides, prices, qtys = rows[0]["sides"] or [], rows[0]["prices"] or [], rows[0]["qtys"] or []
    before = dict(zip(zip(sides, prices), qtys))
    with localcontext(prec=100):  # Numeric(38, 18) totals need more than 28 digits
        totals = [
            (s, p, before.get((s.value, p), Decimal(0)) - taken.get((s.value, p), Decimal(0))) for s, p in ordered
        ]
    events.add(market_data.book_channel(market.id), market_data.book_event(market.id, rows[0]["book_sequence"], totals))
    for v in [taker_view, *map(_view, rows)]:
        events.add(market_data.orders_channel(v.user_id), v.event())
    return taker_view


# the open orders a cancel takes off the book: of a market; of one user (or all); the given ids (or all); for
# expiry only the due ones. Arrival order, so reservations are released and events sent in a stable order.
_VICTIMS = f"""
SELECT {VIEW_SQL} FROM orders
WHERE market_id = $1 AND status IN ('NEW', 'PARTIALLY_FILLED') AND ($2::uuid IS NULL OR user_id = $2)
  AND ($3::uuid[] IS NULL OR id = ANY($3)) AND (NOT $4 OR expires_at <= $5)
ORDER BY seq"""
# every victim finished, one audit row each, and the remainders' value given back to their owners' daily order
# value counters (risk.py; no row when the market has no daily limit), in one round trip
_FINISH_MANY = f"""
WITH a AS (INSERT INTO audit_log (actor_id, action, target_type, target_id, request_id, details)
           SELECT $5::uuid, $6::varchar, 'order', unnest($1::uuid[])::text, $7::varchar, $8::jsonb),
     d AS (UPDATE investor_daily_notional n SET notional = greatest(n.notional - v.amount, 0)
           FROM (SELECT o.market_id, o.user_id, (o.created_at AT TIME ZONE 'UTC')::date AS day,
                        sum(o.price * (o.quantity - o.filled_quantity)) AS amount
                 FROM orders o WHERE o.id = ANY($1) AND o.price IS NOT NULL GROUP BY 1, 2, 3) v
           WHERE n.market_id = v.market_id AND n.user_id = v.user_id AND n.day = v.day)
UPDATE orders SET status = $2, reason = $3, reserved_cash = 0, updated_at = $4 WHERE id = ANY($1)
RETURNING {VIEW_SQL}"""


@transient_retry
async def cancel_orders(
    session: AsyncSession,
    user_id: uuid.UUID | None,
    market_id: uuid.UUID,
    order_ids: list[uuid.UUID] | None,
    *,
    reason: str,
    status: OrderStatus = OrderStatus.CANCELED,
    request_id: str | None = None,
    now: datetime | None = None,
    strict: bool = False,
) -> tuple[list[OrderView], Events]:
    """Cancel open orders of a market (the given ids, or all of `user_id`'s, or all when user_id is None) under
    the market lock, release their reservations, bump the book sequence once, commit. The one path of
    cancelOrder, cancelAllOrders, market closing and GTD expiry (raw asyncpg, like placeOrder; resolvers/raw_sql.py).
    NOT_FOUND for an unknown market; with `strict`, CONFLICT when none of `order_ids` is open any more."""
    now = now or utcnow()
    await book.lock_market(session, market_id)
    views, events = await cancel_locked(
        session,
        user_id,
        market_id,
        order_ids,
        reason=reason,
        status=status,
        request_id=request_id,
        now=now,
        strict=strict,
        actor_id=user_id,
    )
    await unit_of_work.commit(session)
    return views, events


async def cancel_locked(
    session: AsyncSession,
    user_id: uuid.UUID | None,
    market_id: uuid.UUID,
    order_ids: list[uuid.UUID] | None,
    *,
    reason: str,
    status: OrderStatus,
    request_id: str | None,
    now: datetime,
    strict: bool,
    actor_id: uuid.UUID | None,
) -> tuple[list[OrderView], Events]:
    """`cancel_orders` under a market lock the caller holds, without committing; audit rows name `actor_id`."""
    conn = await pg(session)
    currency = await conn.fetchval("SELECT quote_currency FROM markets WHERE id = $1", market_id)
    if currency is None:
        raise NotFound("market not found", field="marketId")
    victims = [
        _view(r) for r in await conn.fetch(_VICTIMS, market_id, user_id, order_ids, status is OrderStatus.EXPIRED, now)
    ]
    if strict and order_ids and not victims:
        current = await conn.fetchval("SELECT status::text FROM orders WHERE id = ANY($1) LIMIT 1", order_ids)
        await session.rollback()
        raise InvalidTransition("order", current or "UNKNOWN", status.value)
    events = Events()
    if not victims:
        return [], events
    for v in victims:
        if v.side is Side.BUY:
            await release_reservation(session, v.id, v.user_id, v.reserved_cash, currency)
    finished = {
        r[0]: _view(r)
        for r in await conn.fetch(
            _FINISH_MANY,
            [v.id for v in victims],
            status.value,
            reason,
            now,
            actor_id,
            f"order.{status.value.lower()}",
            request_id,
            json.dumps({"reason": reason}),
        )
    }
    views = [finished[v.id] for v in victims]
    seq, totals = await book.sequence_and_levels(
        session, market_id, {(v.side, v.price) for v in victims if v.price is not None}
    )
    events.add(market_data.book_channel(market_id), market_data.book_event(market_id, seq, totals))
    for view in views:
        events.add(market_data.orders_channel(view.user_id), view.event())
    return views, events


@transient_retry
async def cancel_order(
    session: AsyncSession, user_id: uuid.UUID, order_id: uuid.UUID, *, request_id: str | None = None
) -> tuple[OrderView, Events]:
    market_id = await (await pg(session)).fetchval(
        "SELECT market_id FROM orders WHERE id = $1 AND user_id = $2", order_id, user_id
    )
    if market_id is None:
        raise NotFound("order not found", field="id")
    done, events = await cancel_orders(
        session, user_id, market_id, [order_id], reason="USER_CANCELED", request_id=request_id, strict=True
    )
    return done[0], events
