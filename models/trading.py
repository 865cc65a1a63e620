"""Trading: markets (a security token against a stablecoin quote currency), orders, trades, settlement
instructions for the on-chain leg, and rolled-up candles.

Prices and quantities are Decimal in whole token units (quantity) and quote currency (price); the on-chain leg is
converted to raw integer units with the token's decimals. Cash moves only through the ledger (resolvers/ledger.py).
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import FetchedValue

from models.base import Address, Base, Hash32, Money, TokenUnits, created_at, updated_at, uuid_pk
from models.identity import pg_enum


class MarketStatus(str, enum.Enum):
    OPEN = "OPEN"
    HALTED = "HALTED"  # temporarily no new orders; resting orders stay
    CLOSED = "CLOSED"


class Side(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(str, enum.Enum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(str, enum.Enum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"


class OrderStatus(str, enum.Enum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


OPEN_STATUSES = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class OrderReason(str, enum.Enum):
    """Why an order is REJECTED, CANCELED or EXPIRED (orders.reason holds the value)."""

    # REJECTED by the compliance gate (resolvers/trading/gate.py)
    MARKET_NOT_OPEN = "MARKET_NOT_OPEN"
    TOKEN_PAUSED = "TOKEN_PAUSED"
    KYC_NOT_APPROVED = "KYC_NOT_APPROVED"
    NO_LINKED_WALLET = "NO_LINKED_WALLET"
    WALLET_FROZEN = "WALLET_FROZEN"
    INSUFFICIENT_TOKEN_BALANCE = "INSUFFICIENT_TOKEN_BALANCE"
    INSUFFICIENT_CASH = "INSUFFICIENT_CASH"
    # REJECTED by the risk controls (resolvers/trading/risk.py)
    PRICE_OUTSIDE_BAND = "PRICE_OUTSIDE_BAND"
    MAX_ORDER_QUANTITY_EXCEEDED = "MAX_ORDER_QUANTITY_EXCEEDED"
    PRICE_REQUIRED = "PRICE_REQUIRED"
    MAX_ORDER_NOTIONAL_EXCEEDED = "MAX_ORDER_NOTIONAL_EXCEEDED"
    DAILY_NOTIONAL_LIMIT_EXCEEDED = "DAILY_NOTIONAL_LIMIT_EXCEEDED"
    MAX_POSITION_EXCEEDED = "MAX_POSITION_EXCEEDED"
    CIRCUIT_BREAKER = "CIRCUIT_BREAKER"  # REJECTED when nothing filled, else CANCELED
    # CANCELED
    USER_CANCELED = "USER_CANCELED"
    IOC_UNFILLED = "IOC_UNFILLED"
    NO_LIQUIDITY = "NO_LIQUIDITY"
    FOK_UNFILLABLE = "FOK_UNFILLABLE"
    SELF_TRADE_PREVENTED = "SELF_TRADE_PREVENTED"
    MARKET_CLOSED = "MARKET_CLOSED"
    KILL_SWITCH = "KILL_SWITCH"
    # EXPIRED
    GTD_EXPIRED = "GTD_EXPIRED"


class HaltReason(str, enum.Enum):
    """Why a market is HALTED by its risk controls (market_risk_limits.halt_reason)."""

    CIRCUIT_BREAKER = "CIRCUIT_BREAKER"
    KILL_SWITCH = "KILL_SWITCH"


class SettlementStatus(str, enum.Enum):
    PENDING = "PENDING"
    SETTLED = "SETTLED"
    FAILED = "FAILED"


class InstructionStatus(str, enum.Enum):
    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"


class Market(Base):
    __tablename__ = "markets"

    id: Mapped[uuid.UUID] = uuid_pk()
    symbol: Mapped[str] = mapped_column(String(50), nullable=False, unique=True)
    base_token_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tokens.id"), nullable=False)
    chain_id: Mapped[int] = mapped_column(Integer, nullable=False)
    token_address: Mapped[str] = mapped_column(Address, nullable=False)
    base_decimals: Mapped[int] = mapped_column(Integer, nullable=False)
    quote_currency: Mapped[str] = mapped_column(String(16), nullable=False)  # ledger currency (stablecoin symbol)
    tick_size: Mapped[Decimal] = mapped_column(Money, nullable=False)
    lot_size: Mapped[Decimal] = mapped_column(Money, nullable=False)
    min_notional: Mapped[Decimal] = mapped_column(Money, nullable=False)
    maker_fee_bps: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    taker_fee_bps: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    status: Mapped[MarketStatus] = mapped_column(
        pg_enum(MarketStatus, "market_status"), nullable=False, default=MarketStatus.OPEN
    )
    # per-market book sequence: bumped under the market's matching lock, so it orders book events
    book_sequence: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # per-market trade sequence: bumped under the market's matching lock, by the batch write for its trades or by
    # a trigger for a trade inserted without one (migrations 0020, 0025), so it numbers the market's trades
    # consecutively (the `trades` stream's sequence)
    trade_sequence: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (UniqueConstraint("base_token_id", "quote_currency", name="uq_markets_token_quote"),)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = uuid_pk()
    # arrival order (time priority); assigned at insert, which happens under the market lock
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False, unique=True)
    market_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("markets.id"), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    client_order_id: Mapped[str | None] = mapped_column(String(64))
    side: Mapped[Side] = mapped_column(pg_enum(Side, "order_side"), nullable=False)
    type: Mapped[OrderType] = mapped_column(pg_enum(OrderType, "order_type"), nullable=False)
    time_in_force: Mapped[TimeInForce] = mapped_column(pg_enum(TimeInForce, "time_in_force"), nullable=False)
    price: Mapped[Decimal | None] = mapped_column(Money)  # limit price; for MARKET buys the price cap
    quantity: Mapped[Decimal] = mapped_column(Money, nullable=False)
    filled_quantity: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    status: Mapped[OrderStatus] = mapped_column(pg_enum(OrderStatus, "order_status"), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(40))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    wallet_address: Mapped[str | None] = mapped_column(Address)  # settles to/from this wallet
    reserved_cash: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))  # buys: still held
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        UniqueConstraint("user_id", "client_order_id", name="uq_orders_user_client_order_id"),
        Index(
            "ix_orders_book",
            "market_id",
            "side",
            "price",
            "seq",
            postgresql_where=text("status IN ('NEW', 'PARTIALLY_FILLED')"),
        ),
        Index("ix_orders_user_created", "user_id", "seq"),
        Index(
            "ix_orders_gtd_due",
            "expires_at",
            postgresql_where=text("status IN ('NEW', 'PARTIALLY_FILLED') AND expires_at IS NOT NULL"),
        ),
        # a user's open orders (the maximum position counts open buys)
        Index(
            "ix_orders_user_open",
            "user_id",
            "market_id",
            postgresql_where=text("status IN ('NEW', 'PARTIALLY_FILLED')"),
        ),
    )


class Trade(Base):
    __tablename__ = "trades"

    id: Mapped[uuid.UUID] = uuid_pk()
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False, unique=True)
    market_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("markets.id"), nullable=False)
    # 1, 2, 3... per market (markets.trade_sequence): given by the batch write, else set by a trigger on insert
    market_sequence: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=FetchedValue())
    # no index: nothing looks trades up by order, and orders are never deleted (migration 0025)
    maker_order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), nullable=False)
    taker_order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), nullable=False)
    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    taker_side: Mapped[Side] = mapped_column(pg_enum(Side, "order_side"), nullable=False)
    price: Mapped[Decimal] = mapped_column(Money, nullable=False)
    quantity: Mapped[Decimal] = mapped_column(Money, nullable=False)
    maker_fee: Mapped[Decimal] = mapped_column(Money, nullable=False)
    taker_fee: Mapped[Decimal] = mapped_column(Money, nullable=False)
    settlement: Mapped[SettlementStatus] = mapped_column(
        pg_enum(SettlementStatus, "settlement_status"), nullable=False, default=SettlementStatus.PENDING
    )
    failure_reason: Mapped[str | None] = mapped_column(String(80))  # why the settlement FAILED
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        Index("ix_trades_market_seq", "market_id", "seq"),
        Index("ux_trades_market_sequence", "market_id", "market_sequence", unique=True),
        Index("ix_trades_market_created", "market_id", "created_at"),
    )


class SettlementInstruction(Base):
    """The token leg of a trade, for the agent to execute on chain (seller wallet -> buyer wallet)."""

    __tablename__ = "settlement_instructions"

    id: Mapped[uuid.UUID] = uuid_pk()
    trade_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trades.id"), nullable=False, unique=True)
    chain_id: Mapped[int] = mapped_column(Integer, nullable=False)
    token_address: Mapped[str] = mapped_column(Address, nullable=False)
    from_wallet: Mapped[str] = mapped_column(Address, nullable=False)
    to_wallet: Mapped[str] = mapped_column(Address, nullable=False)
    amount: Mapped[int] = mapped_column(TokenUnits, nullable=False)  # raw token units
    status: Mapped[InstructionStatus] = mapped_column(
        pg_enum(InstructionStatus, "instruction_status"), nullable=False, default=InstructionStatus.PENDING
    )
    tx_hash: Mapped[str | None] = mapped_column(Hash32)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        # incoming legs not yet finished (the maximum position counts them)
        Index(
            "ix_settlement_instructions_pending_to",
            "chain_id",
            "token_address",
            "to_wallet",
            postgresql_where=text("status IN ('PENDING', 'SUBMITTED')"),
        ),
        # unfinished legs that carry a hash: the gate checks whether their transfer is indexed (migration 0023)
        Index(
            "ix_settlement_instructions_pending_hash",
            "chain_id",
            "token_address",
            "from_wallet",
            postgresql_where=text("status IN ('PENDING', 'SUBMITTED') AND tx_hash IS NOT NULL"),
        ),
    )


class SettlementOutgoing(Base):
    """Per (chain, token, seller wallet): the raw units of its settlement instructions that are PENDING or SUBMITTED,
    kept by statement-level triggers on settlement_instructions (migration 0023), so the compliance gate reads one
    row instead of summing the unfinished instructions (resolvers/trading/gate.py)."""

    __tablename__ = "settlement_outgoing"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_address: Mapped[str] = mapped_column(Address, primary_key=True)
    wallet: Mapped[str] = mapped_column(Address, primary_key=True)
    amount: Mapped[int] = mapped_column(TokenUnits, nullable=False)


class Candle(Base):
    """OHLCV per market, interval and bucket, rolled up from trades by a job (resolvers/trading/candles.py)."""

    __tablename__ = "candles"

    market_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    interval: Mapped[str] = mapped_column(String(16), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    open: Mapped[Decimal] = mapped_column(Money, nullable=False)
    high: Mapped[Decimal] = mapped_column(Money, nullable=False)
    low: Mapped[Decimal] = mapped_column(Money, nullable=False)
    close: Mapped[Decimal] = mapped_column(Money, nullable=False)
    volume: Mapped[Decimal] = mapped_column(Money, nullable=False)
    trade_count: Mapped[int] = mapped_column(Integer, nullable=False)


class MarketRiskLimits(Base):
    """Pre-trade risk controls of a market (resolvers/trading/risk.py), set by ADMIN, and its halt state. NULL: the
    control is off. Checked under the market's matching lock."""

    __tablename__ = "market_risk_limits"

    market_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    price_band_bps: Mapped[int | None] = mapped_column(Integer)  # around the last trade, else reference_price
    reference_price: Mapped[Decimal | None] = mapped_column(Money)  # before any trade (e.g. from the valuation)
    max_order_quantity: Mapped[Decimal | None] = mapped_column(Money)
    max_order_notional: Mapped[Decimal | None] = mapped_column(Money)
    daily_notional_limit: Mapped[Decimal | None] = mapped_column(Money)  # per investor per UTC day
    max_position: Mapped[Decimal | None] = mapped_column(Money)  # per investor, whole token units
    breaker_move_bps: Mapped[int | None] = mapped_column(Integer)
    breaker_window_s: Mapped[int | None] = mapped_column(Integer)
    breaker_halt_s: Mapped[int | None] = mapped_column(Integer)
    halted_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # circuit breaker halt end
    halt_reason: Mapped[str | None] = mapped_column(String(40))  # CIRCUIT_BREAKER | KILL_SWITCH while HALTED
    updated_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        Index("ix_market_risk_limits_halted_until", "halted_until", postgresql_where=text("halted_until IS NOT NULL")),
    )


class InvestorDailyNotional(Base):
    """Order value an investor committed in a market on a UTC day (limit price x quantity filled or resting; a
    cancel gives back its remainder): what the daily notional limit is checked against."""

    __tablename__ = "investor_daily_notional"

    market_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    notional: Mapped[Decimal] = mapped_column(Money, nullable=False)


class MarketMaker(Base):
    """A designated market maker of a market: its own fee tier (a negative maker fee is a rebate) and quoting
    obligations (resolvers/trading/market_makers.py)."""

    __tablename__ = "market_makers"

    market_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    maker_fee_bps: Mapped[int] = mapped_column(Integer, nullable=False)
    taker_fee_bps: Mapped[int] = mapped_column(Integer, nullable=False)
    max_spread_bps: Mapped[int] = mapped_column(Integer, nullable=False)
    min_quote_size: Mapped[Decimal] = mapped_column(Money, nullable=False)
    min_uptime: Mapped[Decimal] = mapped_column(Numeric(5, 4), nullable=False)  # fraction of samples, 0..1
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class MarketMakerSample(Base):
    """One look at a market maker's quotes (a worker job samples every open market's makers)."""

    __tablename__ = "market_maker_samples"

    market_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("markets.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    sampled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    bid: Mapped[Decimal | None] = mapped_column(Money)
    ask: Mapped[Decimal | None] = mapped_column(Money)
    bid_size: Mapped[Decimal] = mapped_column(Money, nullable=False)
    ask_size: Mapped[Decimal] = mapped_column(Money, nullable=False)
    spread_bps: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    compliant: Mapped[bool] = mapped_column(Boolean, nullable=False)
