"""Trading risk controls (limits, circuit breaker, kill switch) and designated market makers, for ADMIN
(resolvers/trading/risk.py, risk_admin.py, market_makers.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, TypeAlias

import strawberry
from strawberry.types import Info

from models.identity import Role
from models.trading import HaltReason as HaltReasonModel
from models.trading import MarketMaker as MarketMakerModel
from models.trading import MarketRiskLimits as LimitsModel
from resolvers.assets.validation import trim
from resolvers.trading import market_data, market_makers, risk_admin, sequencer
from schema.mutations import after_commit, mutation
from schema.permissions import requires
from schema.trading import MarketStatus

strawberry.enum(
    HaltReasonModel,
    description=(
        "Why the risk controls HALTED a market: CIRCUIT_BREAKER (until `haltedUntil`, or an ADMIN reopens it) or "
        "KILL_SWITCH (until an ADMIN reopens it)."
    ),
)
HaltReason: TypeAlias = HaltReasonModel


def _n(d: Decimal | None) -> Decimal | None:
    return None if d is None else trim(d)


@strawberry.type(description="A market's risk limits (null: that control is off) and its halt state.")
class MarketRiskLimits:
    market_id: uuid.UUID
    price_band_bps: int | None = strawberry.field(
        description=(
            "LIMIT prices must lie within the reference price x (1 +- band); MARKET orders fill only inside it."
        )
    )
    reference_price: Decimal | None = strawberry.field(
        description=("The band's reference before the market's first trade (afterwards: the last trade's price).")
    )
    max_order_quantity: Decimal | None
    max_order_notional: Decimal | None
    daily_notional_limit: Decimal | None = strawberry.field(
        description=(
            "Per investor and UTC day: the value of the orders filled or resting (a cancel gives its remainder back)."
        )
    )
    max_position: Decimal | None = strawberry.field(
        description=("Per investor, in tokens: holdings + incoming settlements + open buys in any market of the token.")
    )
    breaker_move_bps: int | None
    breaker_window_s: int | None
    breaker_halt_s: int | None
    halted_until: datetime | None = strawberry.field(description="End of a circuit-breaker halt.")
    halt_reason: HaltReason | None = strawberry.field(
        description="CIRCUIT_BREAKER or KILL_SWITCH while HALTED by them; null otherwise."
    )
    updated_at: datetime

    @classmethod
    def of(cls, r: LimitsModel) -> MarketRiskLimits:
        return cls(
            market_id=r.market_id,
            price_band_bps=r.price_band_bps,
            reference_price=_n(r.reference_price),
            max_order_quantity=_n(r.max_order_quantity),
            max_order_notional=_n(r.max_order_notional),
            daily_notional_limit=_n(r.daily_notional_limit),
            max_position=_n(r.max_position),
            breaker_move_bps=r.breaker_move_bps,
            breaker_window_s=r.breaker_window_s,
            breaker_halt_s=r.breaker_halt_s,
            halted_until=r.halted_until,
            halt_reason=None if r.halt_reason is None else HaltReasonModel(r.halt_reason),
            updated_at=r.updated_at,
        )


@strawberry.input(description="A market and its whole risk configuration: an omitted limit is off.")
class SetMarketRiskLimitsInput:
    market_id: uuid.UUID
    price_band_bps: int | None = None
    reference_price: Decimal | None = strawberry.field(
        default=None,
        description=("Needed with a band before the first trade unless the asset's valuation per token gives one."),
    )
    max_order_quantity: Decimal | None = None
    max_order_notional: Decimal | None = None
    daily_notional_limit: Decimal | None = None
    max_position: Decimal | None = None
    breaker_move_bps: int | None = strawberry.field(
        default=None,
        description=(
            "Circuit breaker: a move above this many bps from the price `breakerWindowS` seconds ago halts the market "
            "for `breakerHaltS` seconds (all three together)."
        ),
    )
    breaker_window_s: int | None = None
    breaker_halt_s: int | None = None


@strawberry.type
class KillSwitchResult:
    market_id: uuid.UUID
    status: MarketStatus
    canceled_orders: int


@strawberry.type(description="A designated market maker of a market: fee tier and quoting obligations.")
class MarketMaker:
    market_id: uuid.UUID
    user_id: uuid.UUID
    maker_fee_bps: int = strawberry.field(description="Negative: a rebate on its maker fills.")
    taker_fee_bps: int
    max_spread_bps: int
    min_quote_size: Decimal
    min_uptime: Decimal
    active: bool
    updated_at: datetime

    @classmethod
    def of(cls, m: MarketMakerModel) -> MarketMaker:
        return cls(
            market_id=m.market_id,
            user_id=m.user_id,
            maker_fee_bps=m.maker_fee_bps,
            taker_fee_bps=m.taker_fee_bps,
            max_spread_bps=m.max_spread_bps,
            min_quote_size=trim(m.min_quote_size),
            min_uptime=trim(m.min_uptime),
            active=m.active,
            updated_at=m.updated_at,
        )


@strawberry.type(description="A market maker's measured quoting and trading in a period.")
class MarketMakerPerformance:
    user_id: uuid.UUID
    email: str
    active: bool
    maker_fee_bps: int
    taker_fee_bps: int
    max_spread_bps: int
    min_quote_size: Decimal
    min_uptime: Decimal
    samples: int = strawberry.field(description="Looks at its quotes while the market was OPEN.")
    compliant_samples: int
    uptime: Decimal | None = strawberry.field(description="compliantSamples / samples; null without samples.")
    meets_obligations: bool
    average_spread_bps: Decimal | None = strawberry.field(description="Over the samples quoting both sides.")
    two_sided_samples: int
    maker_volume: Decimal
    taker_volume: Decimal
    maker_fees: Decimal = strawberry.field(description="Negative: rebates paid to it.")
    taker_fees: Decimal


def _perf(p: market_makers.Performance) -> MarketMakerPerformance:
    return MarketMakerPerformance(
        user_id=p.user_id,
        email=p.email,
        active=p.active,
        maker_fee_bps=p.maker_fee_bps,
        taker_fee_bps=p.taker_fee_bps,
        max_spread_bps=p.max_spread_bps,
        min_quote_size=trim(p.min_quote_size),
        min_uptime=trim(p.min_uptime),
        samples=p.samples,
        compliant_samples=p.compliant_samples,
        uptime=_n(p.uptime),
        meets_obligations=p.meets_obligations,
        average_spread_bps=_n(p.average_spread_bps),
        two_sided_samples=p.two_sided_samples,
        maker_volume=trim(p.maker_volume),
        taker_volume=trim(p.taker_volume),
        maker_fees=trim(p.maker_fees),
        taker_fees=trim(p.taker_fees),
    )


@strawberry.type
class Query:
    @strawberry.field(extensions=requires(Role.ADMIN), description="A market's risk limits and halt state.")
    async def market_risk_limits(self, info: Info, market_id: uuid.UUID) -> MarketRiskLimits | None:
        row = await risk_admin.get_limits(await info.context.session(), market_id)
        return None if row is None else MarketRiskLimits.of(row)

    @strawberry.field(
        extensions=requires(Role.ADMIN),
        description=(
            "Each market maker of a market with its obligations measured in [from, to) (default: the last day)."
        ),
    )
    async def market_maker_report(
        self,
        info: Info,
        market_id: uuid.UUID,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> list[MarketMakerPerformance]:
        start, end = market_makers.report_window(from_, to, datetime.now(UTC))
        rows = await market_makers.report(await info.context.session(), market_id, start, end)
        return [_perf(p) for p in rows]


@strawberry.type
class Mutation:
    @mutation(
        extensions=requires(Role.ADMIN),
        description=("Replace a market's risk limits (omitted: off); the halt state is kept."),
    )
    async def set_market_risk_limits(self, info: Info, input: SetMarketRiskLimitsInput) -> MarketRiskLimits:
        actor = info.context.viewer.require_user()
        spec = risk_admin.LimitsSpec(
            input.price_band_bps,
            input.reference_price,
            input.max_order_quantity,
            input.max_order_notional,
            input.daily_notional_limit,
            input.max_position,
            input.breaker_move_bps,
            input.breaker_window_s,
            input.breaker_halt_s,
        )
        row = await risk_admin.set_limits(
            await info.context.session(), actor, input.market_id, spec, info.context.request_id
        )
        return MarketRiskLimits.of(row)

    @mutation(
        extensions=requires(Role.ADMIN),
        description=(
            "Kill switch: HALT the market and cancel every open order (reservations released). setMarketStatus(OPEN) "
            "resumes it."
        ),
    )
    async def kill_market(self, info: Info, market_id: uuid.UUID, reason: str | None = None) -> KillSwitchResult:
        actor = info.context.viewer.require_user()
        request_id, hub = info.context.request_id, info.context.services.pubsub
        # on a session and task of its own: the cancellations' events go out after its commit even if we go away
        killed = await sequencer.detached(
            await info.context.session(),
            hub,
            lambda session: risk_admin.kill_market(session, actor, market_id, reason, request_id),
            lambda done: done.events,
        )
        after_commit(info, lambda: market_data.publish(hub, killed.events))
        return KillSwitchResult(market_id=market_id, status=killed.status, canceled_orders=killed.canceled)

    @mutation(
        extensions=requires(Role.ADMIN),
        description=(
            "Designate (or update) an account as a market maker of a market with its fee tier and obligations."
        ),
    )
    async def set_market_maker(
        self,
        info: Info,
        market_id: uuid.UUID,
        user_id: uuid.UUID,
        maker_fee_bps: int,
        taker_fee_bps: int,
        max_spread_bps: int,
        min_quote_size: Decimal,
        min_uptime: Decimal,
    ) -> MarketMaker:
        actor = info.context.viewer.require_user()
        spec = market_makers.MakerSpec(maker_fee_bps, taker_fee_bps, max_spread_bps, min_quote_size, min_uptime)
        row = await market_makers.set_market_maker(
            await info.context.session(), actor, market_id, user_id, spec, info.context.request_id
        )
        return MarketMaker.of(row)

    @mutation(extensions=requires(Role.ADMIN), description="End a market-maker designation.")
    async def remove_market_maker(self, info: Info, market_id: uuid.UUID, user_id: uuid.UUID) -> MarketMaker:
        actor = info.context.viewer.require_user()
        row = await market_makers.remove_market_maker(
            await info.context.session(), actor, market_id, user_id, info.context.request_id
        )
        return MarketMaker.of(row)
