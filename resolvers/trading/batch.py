"""A sequencer batch (resolvers/trading/sequencer.py) placed with one read and one write, under the market lock the
caller holds, in its transaction: the read (batch_sql.READ) brings what every order of the batch needs (the
market, each caller's KYC, cash and wallets with their open sells and pending outgoing, the clientOrderIds already
used, the top BOOK_ROWS resting orders of each side); the orders are then decided one after the other in memory by
the same rules as `orders.place_locked` (validation, the gate's `decide`, `matching.match`, settlement's pricing
and cash movements), each seeing what the earlier ones changed (the book, cash, open sells, pending outgoing,
clientOrderIds); then one statement writes it all (batch_sql.WRITE) and a small one bumps the book sequence, and
each order's events are built as if it had been placed alone (book totals from the level totals before the batch
plus the batch's changes in order).

Orders the in-memory path does not decide run through `orders.place_locked` in the same transaction, after what
was decided before them is written; the orders after them start a new read:
- the market has a position limit, a circuit breaker or a halt that may end (their checks take a lock, read and
  write more): the whole batch (the price band, the maximum quantity and value and the daily value are checked in
  memory: risk.check, with the last trade's price and each investor's daily value as the batch changes them);
- a clientOrderId used before (a replay: place_locked returns the stored order) or twice in the batch, or an
  invalid request that carries one (place_locked looks for it in the caller's other markets);
- an order whose matching would walk past the resting orders read (a side of more than BOOK_ROWS orders).
An invalid request without clientOrderId raises its BadUserInput for its caller only, as it does alone. Anything
unexpected (a ledger refusal when cash was spent elsewhere since the read, a unique violation) fails the statement,
and the sequencer rolls the batch back and places each order alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, NotFound
from models.ledger import AccountKind
from models.trading import MarketStatus, OrderStatus, OrderType, Side
from resolvers import ledger
from resolvers.ledger import UserAccount
from resolvers.raw_sql import pg
from resolvers.trading import batch_sql, gate, market_data, orders, risk
from resolvers.trading.book import MarketSpec
from resolvers.trading.ids import new_id
from resolvers.trading.market_data import Events
from resolvers.trading.matching import BookOrder, Incoming, crosses, match
from resolvers.trading.order_view import OrderView, view_of
from resolvers.trading.settlement import (
    PricedFill,
    buy_reservation,
    buyer_cost,
    notional_of,
    price_fill,
    settle_movement,
    settled,
)

BOOK_ROWS = 64  # resting orders read per side
ZERO = Decimal(0)
Level = tuple[Side, Decimal]


@dataclass(slots=True)
class _Plan:
    """One order decided in memory: what its events are made of once the write has numbered the rows."""

    taker: OrderView  # as it stands after its own placement
    taker_side: Side
    now: datetime
    rejected: bool = False
    fills: list[PricedFill] = field(default_factory=list)
    makers: list[OrderView] = field(default_factory=list)  # the makers it changed, as they stand after it
    levels: list[Level] = field(default_factory=list)  # changed levels, sorted (side, price)
    deltas: dict[tuple[str, Decimal], Decimal] = field(default_factory=dict)  # open quantity added per level


class _Batch:
    """The state read for a batch, changed in memory by each order decided."""

    def __init__(self, row: Any, market: MarketSpec, cids: set[tuple[uuid.UUID, str]]) -> None:
        self.market = market
        users = row["mm_users"]
        self.tiers: dict[uuid.UUID, tuple[int, int]] = (
            {} if users is None else {u: (m, t) for u, m, t in zip(users, row["mm_maker"], row["mm_taker"])}
        )
        self.cids = cids
        self.gate_rows: dict[uuid.UUID, list[dict[str, Any]]] = {}
        columns = [row[name] for name in batch_sql._USER_COLUMNS]
        for values in zip(*columns) if columns[0] is not None else ():
            r = dict(zip((name[2:] for name in batch_sql._USER_COLUMNS), values))
            self.gate_rows.setdefault(r["user"], []).append(r)
        self.cash: dict[uuid.UUID, Decimal] = {}  # AVAILABLE moved by the batch, per user
        self.open_sells: dict[str, Decimal] = {}  # open sell quantity added by the batch, per wallet
        self.outgoing: dict[str, int] = {}  # pending outgoing units added by the batch, per wallet
        self.views: dict[uuid.UUID, OrderView] = {}  # every order read or placed: as it stands now
        self.new: list[uuid.UUID] = []  # placed by the batch, in order
        self.audits: list[tuple[str | None, str]] = []  # (request id, details) of each new order
        self.details: dict[tuple[OrderStatus, str | None], str] = {}  # the audit details per (status, reason)
        self.views_new: set[uuid.UUID] = set()  # the same, as a set
        self.touched: set[uuid.UUID] = set()  # new orders a later one of the batch changed (their updated_at)
        self.changed: set[uuid.UUID] = set()  # existing orders the batch changed
        self.sides: dict[Side, list[BookOrder[uuid.UUID]]] = {}
        self.barred: dict[uuid.UUID, str] = {}  # resting orders that may not trade any more, why (book.BARRED_SQL)
        self.complete: dict[Side, bool] = {}  # the whole side was read
        for alias, side in (("bb", Side.BUY), ("bs", Side.SELL)):
            cols = [row[f"{alias}_{c}"] for c in batch_sql.VIEW_COLUMNS]
            views = [view_of(r) for r in zip(*cols)] if cols[0] is not None else []
            self.complete[side] = len(views) < BOOK_ROWS
            self.sides[side] = []
            for v, barred in zip(views, row[f"{alias}_barred"] or ()):
                assert v.price is not None  # resting orders have a price
                self.views[v.id] = v
                self.sides[side].append(
                    BookOrder(
                        v.id,
                        v.user_id,
                        side,
                        v.price,
                        v.quantity - v.filled_quantity,
                        v.seq,
                        v.expires_at,
                        barred is not None,
                    )
                )
                if barred is not None:
                    self.barred[v.id] = barred
        self.movements: list[ledger.Movement] = []
        # the market's risk limits (the controls applied here: band, maximum quantity and value, daily value), the
        # last trade's price and each user's order value per day, as the batch changes them
        self.limits = risk.limits_of(row)
        self.last_price: Decimal | None = row["rl_last"]
        self.used: dict[tuple[uuid.UUID, date], Decimal] = dict(
            zip(zip(row["dn_users"] or [], row["dn_days"] or []), row["dn_used"] or [])
        )
        self.daily: list[tuple[uuid.UUID, date, Decimal]] = []  # order value added (user, day, value)
        self.trades: list[tuple[PricedFill, uuid.UUID, Side, datetime]] = []
        self.plans: list[_Plan] = []

    # --- the gate, with the batch's changes ---
    def _rows(self, user_id: uuid.UUID) -> list[dict[str, Any]]:
        out = []
        for r in self.gate_rows[user_id]:
            r = dict(r)
            moved = self.cash.get(user_id, ZERO)
            if moved:
                r["cash"] = (r["cash"] or ZERO) + moved
            if r["address"] is not None:
                r["open_qty"] = (r["open_qty"] or ZERO) + self.open_sells.get(r["address"], ZERO)
                r["pending"] = int(r["pending"] or 0) + self.outgoing.get(r["address"], 0)
            out.append(r)
        return out

    def _move(self, m: ledger.Movement) -> None:
        self.movements.append(m)
        for ref, amount in m.legs:
            if isinstance(ref, UserAccount) and ref.kind is AccountKind.AVAILABLE:
                self.cash[ref.user_id] = self.cash.get(ref.user_id, ZERO) + amount

    def _fees(self, user_id: uuid.UUID) -> tuple[int, int]:
        return self.tiers.get(user_id, (self.market.maker_fee_bps, self.market.taker_fee_bps))

    # --- one order ---
    def place(self, job: Any, now: datetime) -> Any:
        """The order's outcome (a _Plan, or the BadUserInput it raises), or None when it must be placed by
        `orders.place_locked` instead (see the module docstring)."""
        req, user_id, market = job.req, job.user_id, self.market
        cid = req.client_order_id
        if cid is not None and (user_id, cid) in self.cids:
            return None
        try:
            tif = orders.validate(req, market, now)
        except BadUserInput as exc:
            return None if cid is not None else exc
        reservation = buy_reservation(market, req.price, req.quantity) if req.side is Side.BUY and req.price else ZERO
        verdict = gate.decide(market, self._rows(user_id), req.side, req.quantity, reservation, now)
        limits = self.limits
        checked = risk.Verdict(None, req.price, req.price)  # no limits: the order as given
        if verdict.reason is None and limits.present:
            used = self.used.get((user_id, orders.risk_day(now)), ZERO)
            limits = replace(limits, last_price=self.last_price, used_today=used)
            checked = risk.check(limits, req.side, req.type, req.quantity, req.price, market.tick_size)
            if checked.reason is not None:
                verdict = gate.GateResult(checked.reason, verdict.wallet)
        order_id = new_id()
        # seq, created_at and updated_at are the database's: set once written (`_placed`)
        view = OrderView(
            order_id,
            0,
            market.id,
            user_id,
            cid,
            req.side,
            req.type,
            tif,
            req.price,
            req.quantity,
            ZERO,
            OrderStatus.REJECTED,
            verdict.reason,
            req.expires_at,
            verdict.wallet,
            ZERO,
            now,
            now,
        )
        if verdict.reason is not None:
            return self._add(view, _Plan(view.copy(), req.side, now, rejected=True), cid, job.request_id)
        taker = Incoming(order_id, user_id, req.side, req.type, tif, req.price, req.quantity, 0, req.expires_at)
        opposite = Side.SELL if req.side is Side.BUY else Side.BUY
        book = self.sides[opposite]
        matcher = risk.with_price(taker, checked.match_price) if req.type is OrderType.MARKET else taker
        result = match(matcher, book, now)
        if not self.complete[opposite] and not (
            result.remaining == 0
            or result.reason == "SELF_TRADE_PREVENTED"
            or (book and matcher.price is not None and not crosses(req.side, matcher.price, book[-1].price))
        ):
            return None  # matching might go on past the rows read
        plan = _Plan(view, req.side, now)
        buyer_is_taker = req.side is Side.BUY
        levels: set[Level] = set()
        deltas = plan.deltas
        held = ZERO
        if result.rests:
            assert req.price is not None
            levels.add((req.side, req.price))
            deltas[(req.side.value, req.price)] = result.remaining
            if buyer_is_taker:
                held = buy_reservation(market, req.price, result.remaining)
                self._move(ledger.reserve_movement(user_id, held, f"order:{order_id}:reserve"))
        gone: set[uuid.UUID] = set()
        for maker_id in result.expired_makers:
            v = self.views[maker_id]
            assert v.price is not None
            left = v.quantity - v.filled_quantity
            levels.add((opposite, v.price))
            deltas[(opposite.value, v.price)] = deltas.get((opposite.value, v.price), ZERO) - left
            if opposite is Side.BUY and v.reserved_cash > 0:
                self._move(ledger.release_movement(v.user_id, v.reserved_cash, f"order:{maker_id}:release"))
            elif opposite is Side.SELL and v.wallet_address is not None:
                self.open_sells[v.wallet_address] = self.open_sells.get(v.wallet_address, ZERO) - left
            if maker_id in self.barred:
                why = self.barred[maker_id]
                self._change(v, plan, now, status=OrderStatus.CANCELED, reason=why, reserved_cash=ZERO)
            else:
                self._change(v, plan, now, status=OrderStatus.EXPIRED, reason="GTD_EXPIRED", reserved_cash=ZERO)
            gone.add(maker_id)
        taker_fee_bps = self._fees(user_id)[1]
        for fill in result.fills:
            v = self.views[fill.maker_id]
            assert v.price is not None
            buyer_id, seller_id = (user_id, v.user_id) if buyer_is_taker else (v.user_id, user_id)
            buyer_wallet, seller_wallet = (
                (verdict.wallet, v.wallet_address) if buyer_is_taker else (v.wallet_address, verdict.wallet)
            )
            priced = price_fill(
                market,
                maker_order_id=fill.maker_id,
                buyer_id=buyer_id,
                seller_id=seller_id,
                price=fill.price,
                quantity=fill.quantity,
                buyer_wallet=buyer_wallet,
                seller_wallet=seller_wallet,
                maker_fee_bps=self._fees(v.user_id)[0],
                taker_fee_bps=taker_fee_bps,
            )
            plan.fills.append(priced)
            self.trades.append((priced, order_id, req.side, now))
            self._move(settle_movement(market, priced, req.side))
            levels.add((opposite, v.price))
            deltas[(opposite.value, v.price)] = deltas.get((opposite.value, v.price), ZERO) - fill.quantity
            if priced.from_wallet is not None:
                self.outgoing[priced.from_wallet] = self.outgoing.get(priced.from_wallet, 0) + priced.units
            if opposite is Side.SELL and v.wallet_address is not None:
                self.open_sells[v.wallet_address] = self.open_sells.get(v.wallet_address, ZERO) - fill.quantity
            maker_reserved = v.reserved_cash - (buyer_cost(priced, req.side) if not buyer_is_taker else 0)
            if fill.maker_remaining == 0:
                if opposite is Side.BUY and maker_reserved > 0:  # what the filled buy still holds (rounding)
                    self._move(ledger.release_movement(v.user_id, maker_reserved, f"order:{fill.maker_id}:release"))
                self._change(
                    v, plan, now, filled_quantity=v.quantity, status=OrderStatus.FILLED, reason=None, reserved_cash=ZERO
                )
                gone.add(fill.maker_id)
            else:
                self._change(
                    v,
                    plan,
                    now,
                    filled_quantity=v.quantity - fill.maker_remaining,
                    status=OrderStatus.PARTIALLY_FILLED,
                    reason=None,
                    reserved_cash=maker_reserved,
                )
        # the book after this order: makers gone or reduced, the taker's rest added in priority order
        remaining = {f.maker_id: f.maker_remaining for f in result.fills}
        kept = []
        for o in book:
            if o.id in gone:
                continue
            if o.id in remaining:
                o.remaining = remaining[o.id]
            kept.append(o)
        book[:] = kept
        view.filled_quantity, view.status, view.reason, view.reserved_cash = (
            result.filled,
            result.status,
            result.reason,
            held,
        )
        if result.rests:
            assert req.price is not None
            self._rest(BookOrder(order_id, user_id, req.side, req.price, result.remaining, 0, req.expires_at))
            if req.side is Side.SELL and verdict.wallet is not None:
                self.open_sells[verdict.wallet] = self.open_sells.get(verdict.wallet, ZERO) + result.remaining
        counted = result.filled + (result.remaining if result.rests else 0)
        if limits.daily is not None and checked.value_price is not None and counted:
            value = notional_of(checked.value_price, counted)
            day = orders.risk_day(now)
            self.used[(user_id, day)] = self.used.get((user_id, day), ZERO) + value
            self.daily.append((user_id, day, value))
        if plan.fills:
            self.last_price = plan.fills[-1].price  # the reference of the price band from here
        plan.taker = view.copy()
        plan.levels = sorted(levels, key=lambda x: (x[0].value, x[1]))
        return self._add(view, plan, cid, job.request_id)

    def _change(self, v: OrderView, plan: _Plan, now: datetime, **state: Any) -> None:
        for name, value in state.items():
            setattr(v, name, value)
        v.updated_at = now
        if v.id in self.views_new:
            self.touched.add(v.id)
        else:
            self.changed.add(v.id)
        plan.makers.append(v.copy())

    def _rest(self, order: BookOrder[uuid.UUID]) -> None:
        """Add a resting order behind every order at its price or better; on a side not read whole, only in front
        of the rows not read (else it is left out: an order that would reach it goes to place_locked anyway)."""
        side = self.sides[order.side]
        better = (lambda p: p >= order.price) if order.side is Side.BUY else (lambda p: p <= order.price)
        at = len(side)
        while at > 0 and not better(side[at - 1].price):
            at -= 1
        if at == len(side) and not self.complete[order.side]:
            return
        side.insert(at, order)

    def _add(self, view: OrderView, plan: _Plan, cid: str | None, request_id: str | None) -> _Plan:
        self.views[view.id] = view
        self.new.append(view.id)
        self.views_new.add(view.id)
        key = (plan.taker.status, plan.taker.reason)
        details = self.details.get(key)
        if details is None:
            details = self.details[key] = orders._audit_details(self.market.id, *key)
        self.audits.append((request_id, details))
        if cid is not None:
            self.cids.add((view.user_id, cid))
        self.plans.append(plan)
        return plan

    # --- the write ---
    async def write(self, session: AsyncSession) -> list[orders.Placed]:
        """Store what the batch decided; each plan's Placed, with its events."""
        market = self.market
        conn = await pg(session)
        new = [self.views[i] for i in self.new]
        changed = [self.views[i] for i in self.changed]
        levels = sorted({lv for p in self.plans for lv in p.levels}, key=lambda x: (x[0].value, x[1]))
        trades = self.trades
        args: list[Any] = [
            market.id,
            [v.id for v in new],
            [v.user_id for v in new],
            [v.client_order_id for v in new],
            [v.side.value for v in new],
            [v.type.value for v in new],
            [v.time_in_force.value for v in new],
            [v.price for v in new],
            [v.quantity for v in new],
            [v.filled_quantity for v in new],
            [v.status.value for v in new],
            [v.reason for v in new],
            [v.expires_at for v in new],
            [v.wallet_address for v in new],
            [v.reserved_cash for v in new],
            [v.updated_at if v.id in self.touched else None for v in new],
            [r for r, _ in self.audits],
            [d for _, d in self.audits],
            [f.trade_id for f, *_ in trades],
            [f.maker_order_id for f, *_ in trades],
            [taker for _, taker, _, _ in trades],
            [f.buyer_id for f, *_ in trades],
            [f.seller_id for f, *_ in trades],
            [side.value for _, _, side, _ in trades],
            [f.price for f, *_ in trades],
            [f.quantity for f, *_ in trades],
            [f.maker_fee for f, *_ in trades],
            [f.taker_fee for f, *_ in trades],
            [f.instruction_id for f, *_ in trades],
            [f.from_wallet for f, *_ in trades],
            [f.to_wallet for f, *_ in trades],
            [Decimal(f.units) for f, *_ in trades],
            [f.operation_id for f, *_ in trades],
            [now for *_, now in trades],
            market.chain_id,
            market.token_address,
            [v.id for v in changed],
            [v.filled_quantity for v in changed],
            [v.status.value for v in changed],
            [v.reason for v in changed],
            [v.reserved_cash for v in changed],
            [v.updated_at for v in changed],
            [s.value for s, _ in levels],
            [p for _, p in levels],
            [u for u, _, _ in self.daily],
            [d for _, d, _ in self.daily],
            [v for _, _, v in self.daily],
        ]
        if self.movements:
            currency = market.quote_currency
            await ledger.ensure_accounts(session, currency, [ref for m in self.movements for ref, _ in m.legs])
            row = await conn.fetchrow(batch_sql.WRITE_CASH, *args, *ledger.movements_params(currency, self.movements))
        else:
            row = await conn.fetchrow(batch_sql.WRITE, *args)
        assert row["makers"] == len(changed)
        bumps = sum(1 for p in self.plans if p.levels)
        book_sequence = await conn.fetchval(batch_sql.BUMP, market.id, bumps) if bumps else 0
        return self._placed(row, book_sequence - bumps)

    def _placed(self, row: Any, book_sequence: int) -> list[orders.Placed]:
        numbered = dict(zip(row["order_ids"] or [], zip(row["order_seqs"] or [], row["order_created"] or [])))
        trade_seqs = dict(zip(row["trade_ids"] or [], zip(row["trade_seqs"] or [], row["trade_market_seqs"] or [])))
        totals: dict[tuple[str, Decimal], Decimal] = dict(
            zip(zip(row["sides"] or [], row["prices"] or []), row["qtys"] or [])
        )

        def stored(v: OrderView) -> OrderView:
            if v.id in numbered:
                v.seq, v.created_at = numbered[v.id]
            return v

        out = []
        market_id = self.market.id
        trades_channel, book_channel = market_data.trades_channel(market_id), market_data.book_channel(market_id)
        user_channels: dict[uuid.UUID, str] = {}
        with localcontext(prec=100):  # Numeric(38, 18) totals need more than 28 digits
            for plan in self.plans:
                events = Events()
                add = events.messages.append
                taker = stored(plan.taker)
                taker.updated_at = taker.created_at  # as inserted (a later order of the batch may change it)
                for priced in plan.fills:
                    seq, market_sequence = trade_seqs[priced.trade_id]
                    trade = settled(market_id, priced, plan.taker_side, plan.now, seq, market_sequence)
                    add((trades_channel, trade.event()))
                for key, delta in plan.deltas.items():
                    totals[key] = totals.get(key, ZERO) + delta
                if plan.levels:
                    book_sequence += 1
                    changed = [(s, p, totals.get((s.value, p), ZERO)) for s, p in plan.levels]
                    add((book_channel, market_data.book_event(market_id, book_sequence, changed)))
                for v in [taker, *map(stored, plan.makers)]:
                    channel = user_channels.get(v.user_id)
                    if channel is None:
                        channel = user_channels[v.user_id] = market_data.orders_channel(v.user_id)
                    add((channel, v.event()))
                out.append(orders.Placed(taker, events))
        return out


async def _read(session: AsyncSession, market_id: uuid.UUID, jobs: list[Any]) -> tuple[Any, _Batch | None]:
    """(the market's row, the batch state) for `jobs`; the state is None when the market does not exist or has
    risk limits (the orders are placed one by one)."""
    users = list(dict.fromkeys(j.user_id for j in jobs))
    keyed = [(j.user_id, j.req.client_order_id) for j in jobs if j.req.client_order_id is not None]
    days = sorted({orders.risk_day(j.now) for j in jobs if j.now is not None} | {orders.risk_day(orders.utcnow())})
    row = await (await pg(session)).fetchrow(
        batch_sql.READ, market_id, users, [u for u, _ in keyed], [c for _, c in keyed], BOOK_ROWS, days
    )
    if row is None or (
        row["rl_present"]
        and (row["rl_max_position"] is not None or row["rl_move"] is not None or row["rl_halt_reason"] is not None)
    ):  # the position check (its own lock and read), the circuit breaker, a halt that may end: place_locked
        return row, None
    market = MarketSpec(row[0], MarketStatus(row[1]), *row[2:14])
    cids = set(zip(row["ex_users"] or [], row["ex_cids"] or []))
    return row, _Batch(row, market, cids)


async def place_batch(session: AsyncSession, market_id: uuid.UUID, jobs: list[Any]) -> list[Any]:
    """Place `jobs` (in arrival order) in the session's transaction under the market lock; per job its Placed, or
    the BadUserInput / NotFound / ClientOrderIdReused it raised before writing anything. Does not commit."""
    outcomes: list[Any] = [None] * len(jobs)
    i, in_memory = 0, True
    while i < len(jobs):
        if in_memory:
            _, batch = await _read(session, market_id, jobs[i:])
            in_memory = batch is not None
            if batch is not None:
                start = i
                decided: list[Any] = []
                while i < len(jobs):
                    job = jobs[i]
                    with localcontext(prec=100):  # Numeric(38, 18) quantities need more than 28 digits
                        outcome = batch.place(job, job.now or orders.utcnow())
                    if outcome is None:
                        break
                    decided.append(outcome)
                    i += 1
                placed = iter(await batch.write(session) if batch.plans else [])
                for k, outcome in enumerate(decided):
                    outcomes[start + k] = next(placed) if isinstance(outcome, _Plan) else outcome
                if i == len(jobs):
                    break
        job = jobs[i]
        try:
            outcomes[i] = await orders.place_locked(
                session, job.user_id, job.req, request_id=job.request_id, now=job.now or orders.utcnow()
            )
        except (BadUserInput, NotFound, orders.ClientOrderIdReused) as exc:
            outcomes[i] = exc
        i += 1
    return outcomes
