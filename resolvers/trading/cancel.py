"""Canceling open orders: cancelOrder, cancelAllOrders, market closing and the kill switch, GTD expiry. Under the
market lock, like placing (resolvers/trading/book.py): the victims finish, their reservations are released, the
book sequence moves once; market data is published after the commit."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidTransition, NotFound
from core.transactions import transient_retry
from models.trading import OrderStatus, Side
from resolvers import unit_of_work
from resolvers.raw_sql import pg
from resolvers.trading import book, market_data
from resolvers.trading.market_data import Events
from resolvers.trading.order_view import VIEW_SQL, OrderView, view_of
from resolvers.trading.settlement import release_reservation

# the open orders a cancel takes off the book: of a market; of one user (or all); the given ids (or all); for
# expiry only the due ones. Arrival order, so reservations are released and events sent in a stable order.
_VICTIMS = f"""
SELECT {VIEW_SQL} FROM orders
WHERE market_id = $1 AND status IN ('NEW', 'PARTIALLY_FILLED') AND ($2::uuid IS NULL OR user_id = $2)
  AND ($3::uuid[] IS NULL OR id = ANY($3)) AND (NOT $4 OR expires_at <= $5)
  AND ($6::uuid[] IS NULL OR user_id = ANY($6))
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
    now = now or datetime.now(UTC)
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
    users: list[uuid.UUID] | None = None,
) -> tuple[list[OrderView], Events]:
    """`cancel_orders` under a market lock the caller holds, without committing; audit rows name `actor_id`.
    `users`: only the open orders of these users (with user_id None)."""
    conn = await pg(session)
    currency = await conn.fetchval("SELECT quote_currency FROM markets WHERE id = $1", market_id)
    if currency is None:
        raise NotFound("market not found", field="marketId")
    victims = [
        view_of(r)
        for r in await conn.fetch(_VICTIMS, market_id, user_id, order_ids, status is OrderStatus.EXPIRED, now, users)
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
        r[0]: view_of(r)
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


# the markets where any of these users has an open order, in lock order (sorted: two such cancels lock alike)
_USERS_MARKETS = """
SELECT DISTINCT market_id FROM orders WHERE user_id = ANY($1) AND status IN ('NEW', 'PARTIALLY_FILLED')
ORDER BY market_id"""


async def _cancel_for_compliance(
    session: AsyncSession,
    market_id: uuid.UUID,
    ids: list[uuid.UUID] | None,
    reason: str,
    now: datetime,
    *,
    request_id: str | None = None,
    actor_id: uuid.UUID | None = None,
    users: list[uuid.UUID] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """`cancel_locked` as the compliance paths below use it (the market locked by the caller): orders `ids` (or the
    open ones of `users`) CANCELED with `reason`, whoever owns them, those already closed skipped; the messages to
    publish after the commit."""
    _, done = await cancel_locked(
        session,
        None,
        market_id,
        ids,
        reason=reason,
        status=OrderStatus.CANCELED,
        request_id=request_id,
        now=now,
        strict=False,
        actor_id=actor_id,
        users=users,
    )
    return done.messages


async def cancel_users_orders(
    session: AsyncSession,
    user_ids: list[uuid.UUID],
    *,
    reason: str,
    actor_id: uuid.UUID | None,
    request_id: str | None = None,
    now: datetime | None = None,
) -> Events:
    """Cancel every open order of `user_ids` in every market (reason e.g. KYC_NOT_APPROVED: they may not trade any
    more), in the caller's transaction and without committing: so the status change that stops them trading and the
    cancel commit together. Each market under its lock (as a user cancel: an order being matched at the same moment
    is either filled before or canceled after, never both), reservations released, the book sequence bumped once per
    market. Returns the events to publish after the commit (book and order events, once)."""
    events = Events()
    if not user_ids:
        return events
    now = now or datetime.now(UTC)
    conn = await pg(session)
    for (market_id,) in await conn.fetch(_USERS_MARKETS, user_ids):
        await book.lock_market(session, market_id)
        events.messages.extend(
            await _cancel_for_compliance(
                session, market_id, None, reason, now, request_id=request_id, actor_id=actor_id, users=user_ids
            )
        )
    return events


# the markets of a token where a wallet has open orders, in lock order
_WALLET_MARKETS = """
SELECT DISTINCT o.market_id FROM markets m JOIN orders o ON o.market_id = m.id
WHERE m.chain_id = $1 AND lower(m.token_address) = lower($2) AND o.status IN ('NEW', 'PARTIALLY_FILLED')
  AND lower(o.wallet_address) = lower($3)
ORDER BY o.market_id"""
_WALLET_OPEN = """
SELECT id FROM orders WHERE market_id = $1 AND status IN ('NEW', 'PARTIALLY_FILLED')
  AND lower(wallet_address) = lower($2)"""


async def cancel_wallet_orders(
    session: AsyncSession, chain_id: int, token_address: str, wallet: str, *, reason: str, now: datetime | None = None
) -> Events:
    """Cancel every open order that sells from or buys into `wallet` in the markets of the token (`chain_id`,
    `token_address`) (reason e.g. WALLET_FROZEN: the token refuses its transfers), like `cancel_users_orders`: in
    the caller's transaction, without committing, each market under its lock. Returns the events to publish."""
    events = Events()
    now = now or datetime.now(UTC)
    conn = await pg(session)
    for (market_id,) in await conn.fetch(_WALLET_MARKETS, chain_id, token_address, wallet):
        await book.lock_market(session, market_id)
        ids = [r[0] for r in await conn.fetch(_WALLET_OPEN, market_id, wallet)]  # under the lock
        if not ids:
            continue
        events.messages.extend(await _cancel_for_compliance(session, market_id, ids, reason, now))
    return events


# a wallet's open sells in a token's markets, oldest first, with what of the token it may still send: its indexed
# balance less its partially frozen amount (raw units; the market's decimals to compare)
_WALLET_SELL_MARKETS = """
SELECT DISTINCT o.market_id FROM markets m JOIN orders o ON o.market_id = m.id
WHERE m.chain_id = $1 AND lower(m.token_address) = lower($2) AND o.status IN ('NEW', 'PARTIALLY_FILLED')
  AND o.side = 'SELL' AND lower(o.wallet_address) = lower($3)
ORDER BY o.market_id"""
_WALLET_SELLS = """
SELECT o.id, o.market_id, o.quantity - o.filled_quantity AS remaining, m.base_decimals,
       coalesce(h.balance, 0) - coalesce(h.frozen_amount, 0) AS free
FROM markets m JOIN orders o ON o.market_id = m.id
LEFT JOIN holdings h ON h.chain_id = m.chain_id AND h.token_address = m.token_address AND h.holder = o.wallet_address
WHERE m.id = ANY($1::uuid[]) AND o.status IN ('NEW', 'PARTIALLY_FILLED') AND o.side = 'SELL'
  AND lower(o.wallet_address) = lower($2)
ORDER BY o.created_at, o.seq, o.id"""


async def cancel_unbacked_sells(
    session: AsyncSession, chain_id: int, token_address: str, wallet: str, *, reason: str, now: datetime | None = None
) -> Events:
    """After part of `wallet`'s tokens (`chain_id`, `token_address`) were frozen: its open sells of the token, in
    arrival order, keep what its unfrozen balance (holdings.balance - frozen_amount, as indexed) still covers; each
    one whose remaining quantity no longer fits in what is left is canceled with `reason` (e.g. WALLET_FROZEN: it
    could only trade to fail at settlement). Like `cancel_wallet_orders`: in the caller's transaction, without
    committing, every market involved under its lock (taken before the orders are read, in lock order). Returns the
    events to publish."""
    events = Events()
    now = now or datetime.now(UTC)
    conn = await pg(session)
    markets = [r[0] for r in await conn.fetch(_WALLET_SELL_MARKETS, chain_id, token_address, wallet)]
    for market_id in markets:
        await book.lock_market(session, market_id)
    victims: dict[uuid.UUID, list[uuid.UUID]] = {}
    left: int | None = None
    for oid, market_id, remaining, decimals, free in await conn.fetch(_WALLET_SELLS, markets, wallet):  # locked
        if left is None:
            left = int(free)
        need = int(remaining.scaleb(decimals))
        if need <= left:
            left -= need
        else:
            victims.setdefault(market_id, []).append(oid)
    for market_id, ids in sorted(victims.items()):
        events.messages.extend(await _cancel_for_compliance(session, market_id, ids, reason, now))
    return events
