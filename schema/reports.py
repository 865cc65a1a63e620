"""Reports and dashboard data: cap tables, investor statements, platform KPIs. Types and fields only; the work is in
resolvers/reports/. The same reports download as files from /reports/... (server/reports_http.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry.types import Info

from models.assets import AssetStatus as AssetStatusModel
from models.identity import Role
from models.payments import PaymentState as PaymentStateModel
from resolvers.reports import cap_table as caps
from resolvers.reports import exports, kpis, statements
from schema.assets import AssetStatus
from schema.payments import PaymentState
from schema.permissions import authenticated, requires
from schema.scalars import BigInt

# --- cap table ------------------------------------------------------------------------------------------


@strawberry.type(
    description=(
        "One holder in a cap table. The investor behind the wallet (a linked wallet's user) is shown to staff: userId, "
        "email and kycCountry to ADMIN and COMPLIANCE, fullName to COMPLIANCE signed in interactively, userId and "
        "kycCountry to the asset's ISSUER; null where not shown or when no user linked the wallet."
    )
)
class CapTableHolder:
    holder: str
    balance: BigInt = strawberry.field(description="Raw token units.")
    amount: Decimal = strawberry.field(description="balance / 10^decimals.")
    percent: Decimal = strawberry.field(description="Of the total supply at the block, 6 decimal places.")
    user_id: uuid.UUID | None
    email: str | None
    full_name: str | None
    kyc_country: str | None


@strawberry.type(description="Holders of a token at the end of a block, summed from the indexed Transfer events.")
class CapTable:
    chain_id: int
    token: str
    token_id: uuid.UUID
    asset_id: uuid.UUID | None
    symbol: str
    decimals: int
    at_block: int = strawberry.field(description="The block the table is at (the end of it).")
    at_block_time: datetime | None = strawberry.field(
        description="That block's time, when the index stores the block (blocks with events always are)."
    )
    indexed_block: int = strawberry.field(description="The newest block of the token's indexed history.")
    final: bool = strawberry.field(description="atBlock is at or below the finalized block: no reorg can change it.")
    total_supply: BigInt = strawberry.field(
        description="Raw units held by every holder at the block (mints minus burns)."
    )
    total_amount: Decimal
    holder_count: int = strawberry.field(
        description="Every holder with a non-zero balance (holders may be cut by first)."
    )
    computed_by: str = strawberry.field(
        description=(
            "FORWARD (transfers up to the block), REVERSE (current holdings minus later transfers) or CHECKPOINT (stored "
            "balances at an earlier finalized block plus the transfers since): the cheapest."
        )
    )
    holders: list[CapTableHolder] = strawberry.field(description="Largest balance first, then by address.")
    _table: strawberry.Private[caps.CapTable]

    @strawberry.field(
        description=(
            "These holders as CSV (RFC 4180, a header row). Every holder: GET /reports/cap-table.csv with the same "
            "arguments."
        )
    )
    def csv(self) -> str:
        return exports.cap_table_csv(self._table)

    @classmethod
    def from_table(cls, t: caps.CapTable) -> CapTable:
        return cls(
            chain_id=t.token.chain_id,
            token=t.token.address,
            token_id=t.token.id,
            asset_id=t.token.asset_id,
            symbol=t.token.symbol,
            decimals=t.token.decimals,
            at_block=t.at_block,
            at_block_time=t.at_block_time,
            indexed_block=t.indexed_block,
            final=t.final,
            total_supply=t.total_supply,
            total_amount=t.total_amount,
            holder_count=t.holder_count,
            computed_by=t.strategy.value,
            holders=[
                CapTableHolder(
                    holder=r.holder,
                    balance=r.balance,
                    amount=r.amount,
                    percent=r.percent,
                    user_id=r.user_id,
                    email=r.email,
                    full_name=r.full_name,
                    kyc_country=r.kyc_country,
                )
                for r in t.rows
            ],
            _table=t,
        )


# --- statement ------------------------------------------------------------------------------------------


@strawberry.type(description="Cash of one currency over the period: opening + credits + debits = closing.")
class StatementCash:
    currency: str
    opening: Decimal
    credits: Decimal
    debits: Decimal = strawberry.field(description="Zero or negative.")
    closing: Decimal


@strawberry.type(
    description=(
        "One ledger movement of the investor's cash (AVAILABLE + RESERVED): reservations inside their own cash are not "
        "movements; a trade is one movement (notional and fee)."
    )
)
class StatementCashMovement:
    at: datetime
    currency: str
    amount: Decimal = strawberry.field(description="Positive: in; negative: out.")
    balance_after: Decimal
    kind: str = strawberry.field(description="The ledger transaction kind: CREDIT, SETTLE, WITHDRAW...")
    reference: str


@strawberry.type(description="A trade of the investor in the period, from their side.")
class StatementTrade:
    at: datetime
    trade_id: uuid.UUID
    market: str
    currency: str
    side: str = strawberry.field(description="BUY or SELL.")
    quantity: Decimal
    price: Decimal
    notional: Decimal
    fee: Decimal = strawberry.field(description="The investor's own fee (maker or taker).")
    settlement: str = strawberry.field(description="PENDING, SETTLED or FAILED (cash reversed; in no total).")


@strawberry.type(description="Trading fees paid in the period, per currency (FAILED trades excluded).")
class StatementFee:
    currency: str
    amount: Decimal
    trades: int


@strawberry.type(description="The investor's linked wallets' balance of a security token at both ends of the period.")
class StatementHolding:
    chain_id: int
    token: str
    symbol: str
    start_units: BigInt
    end_units: BigInt
    start: Decimal
    end: Decimal


@strawberry.type(description="An investor's statement for [from, to).")
class InvestorStatement:
    user_id: uuid.UUID
    email: str
    full_name: str | None = strawberry.field(
        description="From the KYC case: for the investor and COMPLIANCE signed in interactively."
    )
    period_from: datetime = strawberry.field(name="from")
    period_to: datetime = strawberry.field(name="to")
    generated_at: datetime
    wallets: list[str]
    cash: list[StatementCash]
    movements: list[StatementCashMovement]
    trades: list[StatementTrade]
    fees: list[StatementFee]
    holdings: list[StatementHolding]
    _statement: strawberry.Private[statements.Statement]

    @strawberry.field(description="The statement as CSV; as PDF: GET /reports/statement.pdf with the same arguments.")
    def csv(self) -> str:
        return exports.statement_csv(self._statement)

    @classmethod
    def from_statement(cls, s: statements.Statement) -> InvestorStatement:
        return cls(
            user_id=s.user_id,
            email=s.email,
            full_name=s.full_name,
            period_from=s.period_from,
            period_to=s.period_to,
            generated_at=s.generated_at,
            wallets=s.wallets,
            cash=[
                StatementCash(
                    currency=c.currency, opening=c.opening, credits=c.credits, debits=c.debits, closing=c.closing
                )
                for c in s.cash
            ],
            movements=[
                StatementCashMovement(
                    at=m.at,
                    currency=m.currency,
                    amount=m.amount,
                    balance_after=m.balance_after,
                    kind=m.kind,
                    reference=m.reference,
                )
                for m in s.movements
            ],
            trades=[
                StatementTrade(
                    at=t.at,
                    trade_id=t.trade_id,
                    market=t.market,
                    currency=t.currency,
                    side=t.side,
                    quantity=t.quantity,
                    price=t.price,
                    notional=t.notional,
                    fee=t.fee,
                    settlement=t.settlement,
                )
                for t in s.trades
            ],
            fees=[StatementFee(currency=f.currency, amount=f.amount, trades=f.trades) for f in s.fees],
            holdings=[
                StatementHolding(
                    chain_id=h.chain_id,
                    token=h.token,
                    symbol=h.symbol,
                    start_units=h.start_units,
                    end_units=h.end_units,
                    start=h.start,
                    end=h.end,
                )
                for h in s.holdings
            ],
            _statement=s,
        )


# --- KPIs -----------------------------------------------------------------------------------------------


@strawberry.type
class AssetStatusCount:
    status: AssetStatus
    count: int


@strawberry.type(description="Latest valuations of tokenized assets (ACTIVE, SUSPENDED, REDEEMING), per currency.")
class TokenizedValue:
    currency: str
    amount: Decimal
    assets: int


@strawberry.type(description="Trades over a window (24h, 7d, 30d) per quote currency; FAILED trades excluded.")
class TradingVolume:
    window: str
    currency: str
    volume: Decimal = strawberry.field(description="Sum of price x quantity.")
    trades: int
    fees: Decimal = strawberry.field(description="Maker + taker fees of those trades.")


@strawberry.type(description="The platform's FEES ledger accounts (trading and issuance fees, all time).")
class FeesEarned:
    currency: str
    amount: Decimal


@strawberry.type(description="Payments created in the last 30 days, by state and currency.")
class PaymentStateTotal:
    state: PaymentState
    currency: str
    count: int
    amount: Decimal = strawberry.field(description="Sum of the intended amounts.")


@strawberry.type(
    description=(
        "Platform KPIs from a snapshot the worker refreshes every 30 s: one Redis read per poll (computed by the poll "
        "when missing or older than 5 minutes)."
    )
)
class PlatformKpis:
    computed_at: datetime
    age_seconds: float
    compute_ms: float = strawberry.field(description="What computing the snapshot took.")
    assets_by_status: list[AssetStatusCount]
    tokenized_value: list[TokenizedValue]
    trading_volume: list[TradingVolume]
    fees_earned: list[FeesEarned]
    payments_by_state: list[PaymentStateTotal]

    @classmethod
    def from_snapshot(cls, s: kpis.KpiSnapshot, now: datetime) -> PlatformKpis:
        return cls(
            computed_at=s.computed_at,
            age_seconds=round(s.age_s(now), 3),
            compute_ms=s.compute_ms,
            assets_by_status=[
                AssetStatusCount(status=AssetStatusModel(a.status), count=a.count) for a in s.assets_by_status
            ],
            tokenized_value=[
                TokenizedValue(currency=v.currency, amount=v.amount, assets=v.assets) for v in s.tokenized_value
            ],
            trading_volume=[
                TradingVolume(window=t.window, currency=t.currency, volume=t.volume, trades=t.trades, fees=t.fees)
                for t in s.trading
            ],
            fees_earned=[FeesEarned(currency=f.currency, amount=f.amount) for f in s.fees_earned],
            payments_by_state=[
                PaymentStateTotal(state=PaymentStateModel(p.state), currency=p.currency, count=p.count, amount=p.amount)
                for p in s.payments
            ],
        )


@strawberry.type
class Query:
    @strawberry.field(
        extensions=authenticated(),
        description=(
            "A token's cap table at the end of atBlock, or at atTime (the last block at or before it), default the "
            "indexed block; from indexed transfers. ADMIN and COMPLIANCE (any token, with investor identity), the "
            "ISSUER of the token's asset (user id and KYC country); others FORBIDDEN. atBlock above the indexed "
            "block or atTime in the future: BAD_USER_INPUT. `first` keeps the largest holders (at most 10000)."
        ),
    )
    async def cap_table(
        self,
        info: Info,
        chain_id: int,
        token: str,
        at_block: int | None = None,
        at_time: datetime | None = None,
        first: int = 1000,
    ) -> CapTable:
        table = await caps.cap_table(
            await info.context.session(),
            info.context.viewer,
            chain_id=chain_id,
            token=token,
            at_block=at_block,
            at_time=at_time,
            cipher=info.context.services.cipher,
            limit=first,
        )
        return CapTable.from_table(table)

    @strawberry.field(
        extensions=authenticated(),
        description=(
            "An investor's statement for [from, to) (at most 400 days): cash movements with opening and closing "
            "balances, trades, fees, holdings at start and end. The caller's own; ADMIN and COMPLIANCE may pass userId."
        ),
    )
    async def investor_statement(
        self,
        info: Info,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        user_id: uuid.UUID | None = None,
    ) -> InvestorStatement:
        s = await statements.statement(
            await info.context.session(),
            info.context.viewer,
            period_from=from_,
            period_to=to,
            user_id=user_id,
            cipher=info.context.services.cipher,
        )
        return InvestorStatement.from_statement(s)

    @strawberry.field(
        extensions=requires(Role.ADMIN, Role.COMPLIANCE),
        description=(
            "Platform KPIs for dashboards (assets by status, tokenized value, trading volume and fees over 24h/7d/30d, "
            "fees earned, payments by state): a snapshot refreshed every 30 s, cheap to poll."
        ),
    )
    async def platform_kpis(self, info: Info) -> PlatformKpis:
        services = info.context.services
        now = datetime.now(UTC)
        snap = await kpis.platform_kpis(
            await info.context.session(), services.redis, services.keys, info.context.viewer, now
        )
        return PlatformKpis.from_snapshot(snap, now)
