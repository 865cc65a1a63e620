"""Settlement report: payment totals per state, currency and chain over a creation-time window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput
from models.payments import Payment, PaymentMethod, PaymentState

MAX_WINDOW_DAYS = 366


def plain(value: Decimal) -> Decimal:
    """Without trailing zeros and never in exponent form (100, not 1E+2)."""
    return Decimal(format(value.normalize(), "f"))


@dataclass(frozen=True)
class SettlementLine:
    state: PaymentState
    method: PaymentMethod
    currency: str
    chain_id: int | None
    count: int
    amount: Decimal  # intended
    received: Decimal
    credited: Decimal
    refunded: Decimal
    refundable: Decimal  # excess/held, flagged for refund


async def settlement_report(session: AsyncSession, start: datetime, end: datetime) -> list[SettlementLine]:
    """`start` inclusive, `end` exclusive, at most a year."""
    if end <= start:
        raise BadUserInput("to must be after from", field="to")
    if (end - start).days > MAX_WINDOW_DAYS:
        raise BadUserInput(f"the window is at most {MAX_WINDOW_DAYS} days", field="to")
    zero = Decimal(0)
    rows = (
        await session.execute(
            select(
                Payment.state,
                Payment.method,
                Payment.currency,
                Payment.chain_id,
                func.count(),
                func.sum(Payment.amount),
                func.sum(Payment.received_amount),
                func.sum(Payment.credited_amount),
                func.sum(Payment.refunded_amount),
                func.sum(Payment.refundable_amount),
            )
            .where(Payment.created_at >= start, Payment.created_at < end)
            .group_by(Payment.state, Payment.method, Payment.currency, Payment.chain_id)
            .order_by(Payment.currency, Payment.chain_id.nulls_first(), Payment.state, Payment.method)
        )
    ).all()
    return [
        SettlementLine(r[0], r[1], r[2], r[3], int(r[4]), *(plain(Decimal(v or zero)) for v in r[5:])) for r in rows
    ]
