"""Placing orders: validation, idempotency per (user, clientOrderId), the compliance gate, matching under the market
lock, settlement and reservations, all in one transaction; market data published after commit. The statements are
resolvers/trading/order_sql.py; canceling is resolvers/trading/cancel.py (re-exported here for existing callers).

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
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal, localcontext
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict, NotFound
from core.transactions import transient_retry
from models.trading import MarketStatus, OrderStatus, OrderType, Side, TimeInForce
from resolvers import ledger, unit_of_work
from resolvers.raw_sql import pg
from resolvers.trading import book, gate, market_data, order_sql, risk, sequencer
from resolvers.trading.book import MarketSpec
from resolvers.trading.cancel import cancel_locked as cancel_locked
from resolvers.trading.cancel import cancel_order as cancel_order
from resolvers.trading.cancel import cancel_orders as cancel_orders
from resolvers.trading.ids import new_id
from resolvers.trading.market_data import Events
from resolvers.trading.matching import Incoming
from resolvers.trading.order_view import BY_CLIENT_ID, BY_ID, OrderView, view_of
from resolvers.trading.settlement import (
    PricedFill,
    buy_reservation,
    buyer_cost,
    notional_of,
    price_fill,
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


@dataclass
class Placed:
    order: OrderView
    events: Events
    replayed: bool = False  # an earlier order with the same clientOrderId


def utcnow() -> datetime:
    return datetime.now(UTC)


class ClientOrderIdReused(Conflict):
    """The request's clientOrderId names a stored order with other parameters: not a retry (raised before anything
    is written, like BadUserInput)."""


def replayed(req: OrderRequest, stored: OrderView) -> OrderView:
    """`stored` (the order under the request's clientOrderId) when the request is that order's again; else
    ClientOrderIdReused. Answering the stored order to another request would tell the caller that an order it never
    placed (another market, side, quantity, price...) is live."""
    tif = req.time_in_force or (TimeInForce.GTC if req.type is OrderType.LIMIT else TimeInForce.IOC)
    asked = (req.market_id, req.side, req.type, tif, req.quantity, req.price, req.expires_at)
    kept = (
        stored.market_id,
        stored.side,
        stored.type,
        stored.time_in_force,
        stored.quantity,
        stored.price,
        stored.expires_at,
    )
    if asked != kept:
        raise ClientOrderIdReused(
            "clientOrderId was already used for a different order",
            field="clientOrderId",
            reason="IDEMPOTENCY_KEY_REUSED",
        )
    return stored


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
    row = await (await pg(session)).fetchrow(BY_CLIENT_ID, user_id, client_order_id)
    return None if row is None else view_of(row)


def _audit_details(market_id: uuid.UUID, status: OrderStatus, reason: str | None) -> str:
    return json.dumps({"market": str(market_id), "status": status.value, "reason": reason})


async def place_order(
    session: AsyncSession,
    user_id: uuid.UUID,
    req: OrderRequest,
    *,
    request_id: str | None = None,
    now: datetime | None = None,
    hub: Any = None,
) -> Placed:
    """Place one order and commit. Returns the order as stored (REJECTED with a reason if the gate refused).

    Inside a unit of work on a session bound to an engine (every placeOrder mutation), the order goes through the
    market's sequencer (resolvers/trading/sequencer.py): concurrent placements of one market in this process are
    matched one after the other in one transaction under one market lock and committed together (group commit);
    the caller's session is not used. Elsewhere (tests on a shared connection, scripts) it runs alone on `session`.
    Alone runs `place_locked`; a batch decides its orders in memory by the same rules between one read and one write
    (resolvers/trading/batch.py, which falls back to `place_locked` for what it does not decide), and
    tests/trading/test_batch_placement.py checks that both decide the same.

    With `hub` (a PubSubHub), the sequencer publishes the order's events after its commit, so they go out even if
    the caller is cancelled while it waits; the caller's `market_data.publish(hub, placed.events)` then only waits
    for them. Without one, or placed alone, the caller publishes after its commit."""
    if sequencer.applies(session):
        return await sequencer.submit(session, user_id, req, request_id, now, hub)
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
        replay = await replay_after_conflict(session, exc, user_id, req)
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
    session: AsyncSession, exc: asyncpg.UniqueViolationError, user_id: uuid.UUID, req: OrderRequest
) -> OrderView:
    """The same clientOrderId placed concurrently in another market: the first one wins (roll back, return it, or
    ClientOrderIdReused when it is another order)."""
    if exc.constraint_name != "uq_orders_user_client_order_id":
        raise exc
    await session.rollback()
    replay = await _existing(session, user_id, req.client_order_id)
    if replay is None:
        raise exc
    return replayed(req, replay)


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
        return Placed(replayed(req, view_of(await conn.fetchrow(BY_ID, found.existing))), Events(), replayed=True)
    try:
        tif = validate(req, market, now)
    except BadUserInput:
        replay = await _existing(session, user_id, req.client_order_id)  # stored in another market
        if replay is None:
            raise
        return Placed(replayed(req, replay), Events(), replayed=True)
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
    order_id = new_id()
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
        view = view_of(
            await conn.fetchrow(
                order_sql.INSERT_REJECTED,
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
            order_sql.INSERT_AND_FINAL_CASH if cash else order_sql.INSERT_AND_FINAL,
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
        taker_view = view_of(row)
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
        gone = (OrderStatus.CANCELED.value, r.barred) if r.barred else (OrderStatus.EXPIRED.value, "GTD_EXPIRED")
        makers.append((maker_id, None, *gone, Decimal(0)))
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
        order_sql.TAKER_AND_TRADES_CASH if cash else order_sql.TAKER_AND_TRADES,
        market.quote_currency,
        cash,
        *stored,
        now,
        *trades_params(market, fills),
    )
    taker_view = view_of(row)
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
    sql = order_sql.MAKERS_AND_FINAL_ONE if len(makers) == 1 else order_sql.MAKERS_AND_FINAL
    rows = await conn.fetch(sql, *final, *(list(c) for c in zip(*makers)), now)
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
    for v in [taker_view, *map(view_of, rows)]:
        events.add(market_data.orders_channel(v.user_id), v.event())
    return taker_view
