"""Trading: markets, orders, trades, order book, candles and cash balances (resolvers/trading)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, TypeAlias

import strawberry
from sqlalchemy import or_, select
from strawberry.types import Info

from core.errors import BadUserInput
from models.identity import Role
from models.operations import OperationState as OperationStateModel
from models.trading import Market as MarketModel
from models.trading import MarketStatus as MarketStatusModel
from models.trading import Order as OrderModel
from models.trading import OrderReason as OrderReasonModel
from models.trading import OrderStatus as OrderStatusModel
from models.trading import OrderType as OrderTypeModel
from models.trading import SettlementStatus as SettlementStatusModel
from models.trading import Side as SideModel
from models.trading import TimeInForce as TimeInForceModel
from models.trading import Trade as TradeModel
from resolvers import ledger
from resolvers.assets.validation import trim
from resolvers.idempotency_keys import check_key
from resolvers.pagination import keyset_page
from resolvers.trading import candles as candle_rules
from resolvers.trading import market_data, markets, orders, sequencer, settlement
from schema.lookups import found
from schema.mutations import after_commit, mutation
from schema.node import Node, register_node
from schema.operations import OperationState
from schema.pagination import Connection
from schema.permissions import authenticated, public_market_data, requires

strawberry.enum(MarketStatusModel)
MarketStatus: TypeAlias = MarketStatusModel
strawberry.enum(SideModel, name="OrderSide")
OrderSide: TypeAlias = SideModel
strawberry.enum(OrderTypeModel)
OrderType: TypeAlias = OrderTypeModel
strawberry.enum(TimeInForceModel)
TimeInForce: TypeAlias = TimeInForceModel
strawberry.enum(OrderStatusModel)
OrderStatus: TypeAlias = OrderStatusModel
strawberry.enum(
    OrderReasonModel,
    description=(
        "Why an order is REJECTED (the compliance gate: MARKET_NOT_OPEN, TOKEN_PAUSED, KYC_NOT_APPROVED, "
        "NO_LINKED_WALLET, WALLET_FROZEN, INSUFFICIENT_TOKEN_BALANCE, INSUFFICIENT_CASH; the risk controls: "
        "PRICE_OUTSIDE_BAND, MAX_ORDER_QUANTITY_EXCEEDED, PRICE_REQUIRED, MAX_ORDER_NOTIONAL_EXCEEDED, "
        "DAILY_NOTIONAL_LIMIT_EXCEEDED, MAX_POSITION_EXCEEDED, CIRCUIT_BREAKER), CANCELED (USER_CANCELED, "
        "IOC_UNFILLED, NO_LIQUIDITY, FOK_UNFILLABLE, SELF_TRADE_PREVENTED, MARKET_CLOSED, KILL_SWITCH, "
        "CIRCUIT_BREAKER) or EXPIRED (GTD_EXPIRED)."
    ),
)
OrderReason: TypeAlias = OrderReasonModel
strawberry.enum(SettlementStatusModel)
SettlementStatus: TypeAlias = SettlementStatusModel
strawberry.enum(candle_rules.CandleInterval)
CandleInterval: TypeAlias = candle_rules.CandleInterval
MAX_DEPTH = 200


@strawberry.type(description="A security token traded against a stablecoin quote currency.")
class Market(Node):
    symbol: str
    token_id: uuid.UUID
    chain_id: int
    token_address: str
    quote_currency: str
    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal
    maker_fee_bps: int
    taker_fee_bps: int
    status: MarketStatus
    created_at: datetime

    @classmethod
    def of(cls, m: MarketModel) -> Market:
        return cls(
            id=m.id,
            symbol=m.symbol,
            token_id=m.base_token_id,
            chain_id=m.chain_id,
            token_address=m.token_address,
            quote_currency=m.quote_currency,
            tick_size=trim(m.tick_size),
            lot_size=trim(m.lot_size),
            min_notional=trim(m.min_notional),
            maker_fee_bps=m.maker_fee_bps,
            taker_fee_bps=m.taker_fee_bps,
            status=m.status,
            created_at=m.created_at,
        )


@strawberry.type(description="An order. REJECTED orders carry the compliance gate's code in `reason`.")
class Order(Node):
    market_id: uuid.UUID
    client_order_id: str | None
    side: OrderSide
    type: OrderType
    time_in_force: TimeInForce
    price: Decimal | None
    quantity: Decimal
    filled_quantity: Decimal
    status: OrderStatus
    reason: OrderReason | None = strawberry.field(
        description="Why the order is REJECTED, CANCELED or EXPIRED (see OrderReason); null otherwise."
    )
    expires_at: datetime | None
    wallet_address: str | None
    reserved_cash: Decimal
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, o: OrderModel | orders.OrderView) -> Order:
        return cls(
            id=o.id,
            market_id=o.market_id,
            client_order_id=o.client_order_id,
            side=o.side,
            type=o.type,
            time_in_force=o.time_in_force,
            price=None if o.price is None else trim(o.price),
            quantity=trim(o.quantity),
            filled_quantity=trim(o.filled_quantity),
            status=o.status,
            reason=None if o.reason is None else OrderReasonModel(o.reason),
            expires_at=o.expires_at,
            wallet_address=o.wallet_address,
            reserved_cash=trim(o.reserved_cash),
            created_at=o.created_at,
            updated_at=o.updated_at,
        )


TRADE_SEQUENCE = (
    "The market's trade sequence: 1, 2, 3... per market, in matching order (the `trades` stream's sequence)."
)


@strawberry.type(description="A trade at the resting (maker) order's price (public market data).")
class Trade(Node):
    sequence: int = strawberry.field(description=TRADE_SEQUENCE)
    market_id: uuid.UUID
    price: Decimal
    quantity: Decimal
    taker_side: OrderSide
    created_at: datetime


@strawberry.type(
    description=(
        "One of the caller's trades, with both orders, fees and the settlement state. `id` is the trade's id: "
        "`node(id)` returns its public `Trade`."
    )
)
class MyTrade:
    id: uuid.UUID = strawberry.field(description="The trade's id (`Trade.id`).")
    sequence: int = strawberry.field(description=TRADE_SEQUENCE)
    market_id: uuid.UUID
    price: Decimal
    quantity: Decimal
    taker_side: OrderSide
    created_at: datetime
    maker_order_id: uuid.UUID
    taker_order_id: uuid.UUID
    side: OrderSide
    fee: Decimal
    settlement: SettlementStatus
    settlement_failure_reason: str | None = strawberry.field(
        description="Why the settlement FAILED (its cash was then reversed); null otherwise."
    )
    settlement_tx_hash: str | None = strawberry.field(
        default=None,
        description=("The token transfer's transaction once the agent sent it (the one that landed, once mined)."),
    )
    settlement_block: int | None = strawberry.field(
        default=None,
        description=("The block the token transfer was mined in; the trade is SETTLED when that block is final."),
    )
    settlement_operation_state: OperationState | None = strawberry.field(
        default=None,
        description="The state of the agent operation carrying the token transfer; null when it has none.",
    )


def trade_of(t: TradeModel) -> Trade:
    return Trade(
        id=t.id,
        sequence=t.market_sequence,
        market_id=t.market_id,
        price=trim(t.price),
        quantity=trim(t.quantity),
        taker_side=t.taker_side,
        created_at=t.created_at,
    )


@strawberry.type
class BookLevel:
    price: Decimal
    quantity: Decimal = strawberry.field(description="Open quantity at this price; 0 in a delta: the level is gone.")


@strawberry.type(description="Order book levels, best first. `snapshot` false: a delta of changed levels.")
class OrderBook:
    market_id: uuid.UUID
    sequence: int
    snapshot: bool
    bids: list[BookLevel]
    asks: list[BookLevel]


def levels(pairs: Any) -> list[BookLevel]:
    return [BookLevel(price=trim(Decimal(p)), quantity=trim(Decimal(q))) for p, q in pairs]


def book_of(snap: market_data.BookSnapshot) -> OrderBook:
    return OrderBook(
        market_id=snap.market_id, sequence=snap.sequence, snapshot=True, bids=levels(snap.bids), asks=levels(snap.asks)
    )


@strawberry.type
class Candle:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int


def candle_of(c: candle_rules.CandleRow) -> Candle:
    return Candle(
        start=c.bucket_start,
        open=trim(c.open),
        high=trim(c.high),
        low=trim(c.low),
        close=trim(c.close),
        volume=trim(c.volume),
        trade_count=c.trade_count,
    )


@strawberry.type
class CashBalance:
    currency: str
    available: Decimal
    reserved: Decimal
    total: Decimal


def check_depth(depth: int) -> None:
    if not 1 <= depth <= MAX_DEPTH:
        raise BadUserInput(f"depth must be between 1 and {MAX_DEPTH}", field="depth")


@strawberry.type
class Query:
    @strawberry.field(extensions=public_market_data(), description="Markets by symbol.")
    async def markets(self, info: Info, status: MarketStatus | None = None) -> list[Market]:
        session = await info.context.session()
        return [Market.of(m) for m in await markets.list_markets(session, status)]

    @strawberry.field(
        extensions=public_market_data(),
        description="Top `depth` price levels per side, with the sequence; null for an unknown market.",
    )
    async def order_book(self, info: Info, market_id: uuid.UUID, depth: int = 20) -> OrderBook | None:
        check_depth(depth)
        snap = await found(market_data.book_snapshot(await info.context.session(), market_id, depth))
        return None if snap is None else book_of(snap)

    @strawberry.field(extensions=public_market_data(), description="A market's trades, newest first.")
    async def trades(
        self,
        info: Info,
        market_id: uuid.UUID,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Trade]:
        session = await info.context.session()
        page = await keyset_page(
            session,
            select(TradeModel).where(TradeModel.market_id == market_id),
            [TradeModel.seq],
            descending=True,
            first=first,
            after=after,
            last=last,
            before=before,
        )
        return Connection.from_page(page, trade_of)

    @strawberry.field(
        extensions=public_market_data(), description="OHLCV buckets in [from, to) (default: the last day)."
    )
    async def candles(
        self,
        info: Info,
        market_id: uuid.UUID,
        interval: CandleInterval,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> list[Candle]:
        start, end = candle_rules.window(from_, to, datetime.now(UTC))
        session = await info.context.session()
        return [candle_of(c) for c in await candle_rules.candles(session, market_id, interval, start, end)]

    @strawberry.field(extensions=authenticated(), description="The caller's orders, newest first.")
    async def my_orders(
        self,
        info: Info,
        status: list[OrderStatus] | None = None,
        market_id: uuid.UUID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Order]:
        user_id = info.context.viewer.require_user()
        stmt = select(OrderModel).where(OrderModel.user_id == user_id)
        if status:
            stmt = stmt.where(OrderModel.status.in_(status))
        if market_id is not None:
            stmt = stmt.where(OrderModel.market_id == market_id)
        page = await keyset_page(
            await info.context.session(), stmt, [OrderModel.seq], descending=True, first=first, after=after
        )
        return Connection.from_page(page, Order.of)

    @strawberry.field(extensions=authenticated(), description="The caller's trades (as buyer or seller), newest first.")
    async def my_trades(
        self, info: Info, market_id: uuid.UUID | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[MyTrade]:
        user_id = info.context.viewer.require_user()
        stmt = select(TradeModel).where(or_(TradeModel.buyer_id == user_id, TradeModel.seller_id == user_id))
        if market_id is not None:
            stmt = stmt.where(TradeModel.market_id == market_id)
        session = await info.context.session()
        page = await keyset_page(session, stmt, [TradeModel.seq], descending=True, first=first, after=after)
        legs = await settlement.chain_legs(session, [t.id for t in page.rows])
        no_leg = settlement.ChainLeg(None, None, None)

        def node(t: TradeModel) -> MyTrade:
            side = SideModel.BUY if t.buyer_id == user_id else SideModel.SELL
            is_taker = side is t.taker_side
            leg = legs.get(t.id, no_leg)
            return MyTrade(
                id=t.id,
                sequence=t.market_sequence,
                market_id=t.market_id,
                price=trim(t.price),
                quantity=trim(t.quantity),
                taker_side=t.taker_side,
                created_at=t.created_at,
                maker_order_id=t.maker_order_id,
                taker_order_id=t.taker_order_id,
                side=side,
                fee=trim(t.taker_fee if is_taker else t.maker_fee),
                settlement=t.settlement,
                settlement_failure_reason=t.failure_reason,
                settlement_tx_hash=leg.tx_hash,
                settlement_block=leg.block_number,
                settlement_operation_state=None
                if leg.operation_state is None
                else OperationStateModel(leg.operation_state),
            )

        return Connection.from_page(page, node)

    @strawberry.field(extensions=authenticated(), description="The caller's cash per currency (ledger).")
    async def my_balances(self, info: Info) -> list[CashBalance]:
        user_id = info.context.viewer.require_user()
        rows = await ledger.balances(await info.context.session(), user_id)
        return [
            CashBalance(
                currency=b.currency, available=trim(b.available), reserved=trim(b.reserved), total=trim(b.total)
            )
            for b in rows
        ]


@strawberry.input
class PlaceOrderInput:
    market_id: uuid.UUID
    side: OrderSide
    type: OrderType
    quantity: Decimal
    price: Decimal | None = strawberry.field(default=None, description="Limit price; for MARKET buys the price cap.")
    time_in_force: TimeInForce | None = strawberry.field(
        default=None, description="Default GTC for LIMIT, IOC for MARKET."
    )
    expires_at: datetime | None = None
    client_order_id: str | None = strawberry.field(
        default=None,
        description=(
            "Idempotency key per user, 1 to 64 visible characters (no spaces or control characters); the same id "
            "for another order: IDEMPOTENCY_KEY_REUSED."
        ),
    )


@strawberry.type
class Mutation:
    @mutation(extensions=requires(Role.ADMIN), description="Open a market for an ACTIVE security token.")
    async def open_market(
        self,
        info: Info,
        token_id: uuid.UUID,
        quote_currency: str,
        tick_size: Decimal,
        lot_size: Decimal,
        min_notional: Decimal = Decimal(0),
        maker_fee_bps: int = 0,
        taker_fee_bps: int = 0,
        symbol: str | None = None,
    ) -> Market:
        spec = markets.MarketSpec(
            token_id, quote_currency, tick_size, lot_size, min_notional, maker_fee_bps, taker_fee_bps, symbol
        )
        return Market.of(await markets.open_market(info.context, spec))

    @mutation(
        extensions=requires(Role.ADMIN), description="OPEN | HALTED | CLOSED. Closing cancels the market's open orders."
    )
    async def set_market_status(self, info: Info, market_id: uuid.UUID, status: MarketStatus) -> Market:
        actor, request_id = info.context.viewer.require_user(), info.context.request_id

        async def close(session: Any) -> tuple[MarketModel, market_data.Events]:
            market = await markets.set_status_in(session, actor, request_id, market_id, status)
            if market.status is not MarketStatusModel.CLOSED:
                return market, market_data.Events()
            _, events = await orders.cancel_orders(
                session, None, market.id, None, reason="MARKET_CLOSED", request_id=request_id
            )
            return market, events

        hub = info.context.services.pubsub
        market, events = await sequencer.detached(await info.context.session(), hub, close, _events)
        after_commit(info, lambda: market_data.publish(hub, events))
        return Market.of(market)

    @mutation(
        extensions=authenticated(),
        description=(
            "Place an order (idempotent per clientOrderId). A compliance refusal is a REJECTED order with a reason, "
            "not an error."
        ),
    )
    async def place_order(self, info: Info, input: PlaceOrderInput) -> Order:
        user_id = info.context.viewer.require_user()
        check_key(input.client_order_id, field="clientOrderId", max_chars=orders.MAX_CLIENT_ORDER_ID)
        req = orders.OrderRequest(
            input.market_id,
            input.side,
            input.type,
            input.quantity,
            input.price,
            input.time_in_force,
            input.expires_at,
            input.client_order_id,
        )
        hub = info.context.services.pubsub  # the sequencer publishes after its commit; the caller waits for that
        placed = await orders.place_order(
            await info.context.session(), user_id, req, request_id=info.context.request_id, hub=hub
        )
        after_commit(info, lambda: market_data.publish(hub, placed.events))
        return Order.of(placed.order)

    @mutation(extensions=authenticated(), description="Cancel one of the caller's open orders.")
    async def cancel_order(self, info: Info, id: uuid.UUID) -> Order:
        user_id, request_id = info.context.viewer.require_user(), info.context.request_id
        hub = info.context.services.pubsub
        view, events = await sequencer.detached(
            await info.context.session(),
            hub,
            lambda session: orders.cancel_order(session, user_id, id, request_id=request_id),
            _events,
        )
        after_commit(info, lambda: market_data.publish(hub, events))
        return Order.of(view)

    @mutation(extensions=authenticated(), description="Cancel all of the caller's open orders in a market.")
    async def cancel_all_orders(self, info: Info, market_id: uuid.UUID) -> list[Order]:
        user_id, request_id = info.context.viewer.require_user(), info.context.request_id
        hub = info.context.services.pubsub
        views, events = await sequencer.detached(
            await info.context.session(),
            hub,
            lambda session: orders.cancel_orders(
                session, user_id, market_id, None, reason="USER_CANCELED", request_id=request_id
            ),
            _events,
        )
        after_commit(info, lambda: market_data.publish(hub, events))
        return [Order.of(v) for v in views]


def _events(result: tuple[Any, market_data.Events]) -> market_data.Events:
    """The events of a (result, events) pair: what sequencer.detached publishes after its commit."""
    return result[1]


def market_data_visible(info: Info) -> bool:
    """Public market data (schema/permissions.public_market_data): hidden from anonymous callers only when
    MARKET_DATA_REQUIRES_LOGIN."""
    return not (info.context.services.settings.market_data_requires_login and not info.context.viewer.authenticated)


async def load_market(info: Info, id: uuid.UUID) -> Market | None:
    """`node(id)` for a Market: public market data, like `markets`."""
    if not market_data_visible(info):
        return None
    market = await (await info.context.session()).get(MarketModel, id)
    return None if market is None else Market.of(market)


async def load_trade(info: Info, id: uuid.UUID) -> Trade | None:
    """`node(id)` for a Trade: public market data, like `trades`."""
    if not market_data_visible(info):
        return None
    trade = await (await info.context.session()).get(TradeModel, id)
    return None if trade is None else trade_of(trade)


async def load_order(info: Info, id: uuid.UUID) -> Order | None:
    """`node(id)` for an Order: only its owner sees it (like `myOrders`)."""
    user_id = info.context.viewer.user_id
    if user_id is None:
        return None
    order = await (await info.context.session()).get(OrderModel, id)
    return Order.of(order) if order is not None and order.user_id == user_id else None


register_node("Market", "markets", load_market)
register_node("Order", "orders", load_order)
register_node("Trade", "trades", load_trade)
