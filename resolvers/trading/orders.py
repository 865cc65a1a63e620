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

import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, InvalidTransition, NotFound
from models.tokens import Token
from models.trading import OPEN_STATUSES, Market, Order, OrderStatus, OrderType, Side, TimeInForce
from resolvers import ledger
from resolvers.audit import record
from resolvers.trading import book, gate, market_data
from resolvers.trading.market_data import Events
from resolvers.trading.matching import Incoming
from resolvers.trading.settlement import buy_reservation, notional_of, release_reservation, settle

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


VIEW_COLUMNS = tuple(getattr(Order, f.name) for f in fields(OrderView))


async def load_views(session: AsyncSession, *where: Any) -> list[OrderView]:
    return [OrderView(*r) for r in (await session.execute(select(*VIEW_COLUMNS).where(*where))).all()]


@dataclass
class Placed:
    order: OrderView
    events: Events
    replayed: bool = False  # an earlier order with the same clientOrderId


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


MAX_AMOUNT = Decimal("1e18")  # Numeric(38, 18) holds 20 integer digits; products must stay in range


def _multiple(value: Decimal, step: Decimal) -> bool:
    with localcontext(prec=100):
        return (value % step) == 0


def validate(req: OrderRequest, market: Market, now: datetime) -> TimeInForce:
    if not req.quantity.is_finite() or not 0 < req.quantity < MAX_AMOUNT:
        raise BadUserInput("quantity must be positive and below 1e18", field="quantity")
    if not _multiple(req.quantity, market.lot_size):
        raise BadUserInput(f"quantity must be a multiple of the lot size {market.lot_size.normalize()}",
                           field="quantity")
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
        raise BadUserInput(f"order value is below the minimum notional {market.min_notional.normalize()}",
                           field="quantity")
    if req.client_order_id is not None and not 0 < len(req.client_order_id) <= MAX_CLIENT_ORDER_ID:
        raise BadUserInput(f"clientOrderId must have 1 to {MAX_CLIENT_ORDER_ID} characters", field="clientOrderId")
    return tif


async def _existing(session: AsyncSession, user_id: uuid.UUID, client_order_id: str | None) -> OrderView | None:
    if client_order_id is None:
        return None
    views = await load_views(session, Order.user_id == user_id, Order.client_order_id == client_order_id)
    return views[0] if views else None


async def place_order(session: AsyncSession, user_id: uuid.UUID, req: OrderRequest, *,
                      request_id: str | None = None, now: datetime | None = None) -> Placed:
    """Place one order and commit. Returns the order as stored (REJECTED with a reason if the gate refused)."""
    now = now or utcnow()
    # the lock comes first: everything read after it (market status, fees, the book, open sells) is current
    await book.lock_market(session, req.market_id)
    row = (await session.execute(select(Market, Token).join(Token, Token.id == Market.base_token_id)
                                 .where(Market.id == req.market_id))).one_or_none()
    if row is None:
        raise NotFound("market not found", field="marketId")
    market, token = row
    tif = validate(req, market, now)
    if (found := await _existing(session, user_id, req.client_order_id)) is not None:
        await session.rollback()
        return Placed(found, Events(), replayed=True)
    reservation = buy_reservation(market, req.price, req.quantity) if req.side is Side.BUY and req.price else Decimal(0)
    verdict = await gate.check(session, market, token, user_id, req.side, req.quantity, reservation, now)
    order_id = uuid.uuid4()
    values = dict(id=order_id, market_id=market.id, user_id=user_id, client_order_id=req.client_order_id,
                  side=req.side, type=req.type, time_in_force=tif, price=req.price, quantity=req.quantity,
                  filled_quantity=Decimal(0), expires_at=req.expires_at, wallet_address=verdict.wallet,
                  reserved_cash=Decimal(0))
    events = Events()
    touched: set[uuid.UUID] = {order_id}
    try:
        if verdict.reason is not None:
            await session.execute(insert(Order).values(**values, status=OrderStatus.REJECTED, reason=verdict.reason))
        else:
            seq = (await session.execute(insert(Order).values(**values, status=OrderStatus.NEW)
                                         .returning(Order.seq))).scalar_one()
            taker = Incoming(order_id, user_id, req.side, req.type, tif, req.price, req.quantity, seq, req.expires_at)
            touched |= await _execute(session, market, taker, verdict.wallet, now, events)
    except IntegrityError:
        # the same clientOrderId placed concurrently in another market: the first one wins
        await session.rollback()
        found = await _existing(session, user_id, req.client_order_id)
        if found is None:
            raise
        return Placed(found, Events(), replayed=True)
    views = {v.id: v for v in await load_views(session, Order.id.in_(touched))}
    for view in views.values():
        events.add(market_data.orders_channel(view.user_id), view.event())
    view = views[order_id]
    record(session, actor_id=user_id, action="order.place", target_type="order", target_id=order_id,
           request_id=request_id, details={"market": str(market.id), "status": view.status.value,
                                           "reason": view.reason})
    await session.commit()
    return Placed(view, events)


async def _execute(session: AsyncSession, market: Market, taker: Incoming, taker_wallet: str | None,
                   now: datetime, events: Events) -> set[uuid.UUID]:
    """Match the taker, settle its fills, update the makers; returns the makers touched."""
    result, resting = await book.match_against_book(session, market.id, taker, now)
    opposite = Side.SELL if taker.side is Side.BUY else Side.BUY
    levels: set[tuple[Side, Decimal]] = set()
    touched: set[uuid.UUID] = set()
    for maker_id in result.expired_makers:
        r = resting[maker_id]
        levels.add((opposite, r.price))
        touched.add(maker_id)
        await _finish(session, market, maker_id, r.user_id, opposite, r.reserved_cash, OrderStatus.EXPIRED,
                      "GTD_EXPIRED")
    buyer_is_taker = taker.side is Side.BUY
    for fill in result.fills:
        r = resting[fill.maker_id]
        buyer_id, seller_id = (taker.owner, r.user_id) if buyer_is_taker else (r.user_id, taker.owner)
        buyer_wallet, seller_wallet = (taker_wallet, r.wallet) if buyer_is_taker else (r.wallet, taker_wallet)
        settled = await settle(session, market, maker_order_id=fill.maker_id, taker_order_id=taker.id,  # type: ignore[arg-type]
                               taker_side=taker.side, buyer_id=buyer_id, seller_id=seller_id,  # type: ignore[arg-type]
                               price=fill.price, quantity=fill.quantity, buyer_wallet=buyer_wallet,
                               seller_wallet=seller_wallet, now=now)
        events.add(market_data.trades_channel(market.id), settled.event())
        levels.add((opposite, r.price))
        touched.add(fill.maker_id)  # type: ignore[arg-type]
        maker_reserved = r.reserved_cash - (settled.buyer_cost if not buyer_is_taker else 0)
        if fill.maker_remaining == 0:
            await _finish(session, market, fill.maker_id, r.user_id, opposite, maker_reserved, OrderStatus.FILLED,  # type: ignore[arg-type]
                          None, filled=r.quantity)
        else:
            await session.execute(update(Order).where(Order.id == fill.maker_id).values(
                filled_quantity=r.quantity - fill.maker_remaining, status=OrderStatus.PARTIALLY_FILLED,
                reserved_cash=maker_reserved, updated_at=now))
    values: dict[str, Any] = dict(filled_quantity=result.filled, status=result.status, reason=result.reason)
    if result.rests:
        assert taker.price is not None
        levels.add((taker.side, taker.price))
        if buyer_is_taker:  # only the resting part holds cash; the fills were paid from AVAILABLE
            held = buy_reservation(market, taker.price, result.remaining)
            await ledger.reserve(session, taker.owner, held, market.quote_currency,  # type: ignore[arg-type]
                                 reference=f"order:{taker.id}:reserve")
            values["reserved_cash"] = held
    if result.status is not OrderStatus.NEW or "reserved_cash" in values:  # a plain resting sell is as inserted
        await session.execute(update(Order).where(Order.id == taker.id).values(**values))
    if levels:
        seq = await book.next_sequence(session, market.id)
        events.add(market_data.book_channel(market.id),
                   market_data.book_event(market.id, seq, await book.level_totals(session, market.id, levels)))
    return touched


async def _finish(session: AsyncSession, market: Market, order_id: uuid.UUID, user_id: uuid.UUID, side: Side,
                  reserved: Decimal, status: OrderStatus, reason: str | None, filled: Decimal | None = None) -> None:
    """Take an order off the book (FILLED, CANCELED, EXPIRED) and give back what it still holds."""
    if side is Side.BUY:
        await release_reservation(session, order_id, user_id, reserved, market.quote_currency)
    values: dict[str, Any] = dict(status=status, reason=reason, reserved_cash=Decimal(0), updated_at=utcnow())
    if filled is not None:
        values["filled_quantity"] = filled
    await session.execute(update(Order).where(Order.id == order_id).values(**values))


async def cancel_orders(session: AsyncSession, user_id: uuid.UUID | None, market_id: uuid.UUID,
                        order_ids: list[uuid.UUID] | None, *, reason: str, status: OrderStatus = OrderStatus.CANCELED,
                        request_id: str | None = None, now: datetime | None = None,
                        strict: bool = False) -> tuple[list[OrderView], Events]:
    """Cancel open orders of a market (the given ids, or all of `user_id`'s, or all when user_id is None) under
    the market lock, release their reservations, bump the book sequence once, commit."""
    now = now or utcnow()
    await book.lock_market(session, market_id)
    where = [Order.market_id == market_id, Order.status.in_(OPEN_STATUSES)]
    if user_id is not None:
        where.append(Order.user_id == user_id)
    if order_ids is not None:
        where.append(Order.id.in_(order_ids))
    if status is OrderStatus.EXPIRED:
        where.append(Order.expires_at <= now)
    victims = await load_views(session, *where)
    if strict and order_ids and not victims:
        current = await load_views(session, Order.id.in_(order_ids))
        await session.rollback()
        raise InvalidTransition("order", current[0].status.value if current else "UNKNOWN", status.value)
    market = await session.get(Market, market_id)
    assert market is not None
    events = Events()
    levels: set[tuple[Side, Decimal]] = set()
    for v in victims:
        await _finish(session, market, v.id, v.user_id, v.side, v.reserved_cash, status, reason)
        if v.price is not None:
            levels.add((v.side, v.price))
    if victims:
        seq = await book.next_sequence(session, market_id)
        events.add(market_data.book_channel(market_id),
                   market_data.book_event(market_id, seq, await book.level_totals(session, market_id, levels)))
        views = await load_views(session, Order.id.in_([v.id for v in victims]))
        for view in views:
            events.add(market_data.orders_channel(view.user_id), view.event())
            record(session, actor_id=user_id, action=f"order.{status.value.lower()}", target_type="order",
                   target_id=view.id, request_id=request_id, details={"reason": reason})
        victims = views
    await session.commit()
    return victims, events


async def cancel_order(session: AsyncSession, user_id: uuid.UUID, order_id: uuid.UUID, *,
                       request_id: str | None = None) -> tuple[OrderView, Events]:
    owned = await load_views(session, Order.id == order_id, Order.user_id == user_id)
    if not owned:
        raise NotFound("order not found", field="id")
    done, events = await cancel_orders(session, user_id, owned[0].market_id, [order_id], reason="USER_CANCELED",
                                       request_id=request_id, strict=True)
    return done[0], events
