"""The payment state machine: one table of allowed transitions and who may make each, enforced in one place.

Every transition writes a `payment_transitions` row (the payment's history) in the caller's transaction and
queues a notification (Redis `payments:<id>` channel + webhook outbox rows), sent once the caller commits
(`notify.flush`). Mutations additionally write the platform audit log.

    AWAITING_FUNDS -> DETECTED -> CONFIRMED          (full amount, final on its chain)
    AWAITING_FUNDS -> UNDERPAID -> DETECTED/CONFIRMED (top-ups until expiry; several transfers sum)
    ... -> OVERPAID                                  (intended amount credited, excess flagged for refund)
    DETECTED/UNDERPAID -> AWAITING_FUNDS             (a reorg removed the transfer before finality)
    AWAITING_FUNDS/UNDERPAID -> EXPIRED -> LATE      (funds after expiry: held for review)
    CONFIRMED/OVERPAID/LATE/EXPIRED -> PARTIALLY_REFUNDED -> REFUNDED
    REFUNDED/PARTIALLY_REFUNDED -> back                (a refund's payout failed on chain: the refund is undone)
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidTransition
from models.payments import Payment, PaymentState, PaymentTransition
from resolvers.payments import notify
from resolvers.raw_sql import pg

S = PaymentState


class Actor(str, enum.Enum):
    SYSTEM = "SYSTEM"  # the reconciler and the expiry job
    ADMIN = "ADMIN"  # treasury staff
    OWNER = "OWNER"  # the paying user


_SYS, _ADMIN, _OWNER = frozenset({Actor.SYSTEM}), frozenset({Actor.ADMIN}), frozenset({Actor.OWNER})

TRANSITIONS: dict[tuple[PaymentState, PaymentState], frozenset[Actor]] = {
    (S.AWAITING_FUNDS, S.DETECTED): _SYS,
    (S.AWAITING_FUNDS, S.UNDERPAID): _SYS,
    (S.AWAITING_FUNDS, S.CONFIRMED): _SYS | _ADMIN,  # already final when first seen; bank transfer confirmed
    (S.AWAITING_FUNDS, S.OVERPAID): _SYS,
    (S.AWAITING_FUNDS, S.EXPIRED): _SYS,
    (S.AWAITING_FUNDS, S.CANCELED): _OWNER | _ADMIN,
    (S.AWAITING_FUNDS, S.FAILED): _ADMIN,
    (S.DETECTED, S.CONFIRMED): _SYS,
    (S.DETECTED, S.OVERPAID): _SYS,
    (S.DETECTED, S.UNDERPAID): _SYS,  # a reorg removed one of several transfers
    (S.DETECTED, S.AWAITING_FUNDS): _SYS,  # a reorg removed the transfer
    (S.DETECTED, S.FAILED): _ADMIN,
    (S.UNDERPAID, S.DETECTED): _SYS,
    (S.UNDERPAID, S.CONFIRMED): _SYS,
    (S.UNDERPAID, S.OVERPAID): _SYS,
    (S.UNDERPAID, S.AWAITING_FUNDS): _SYS,
    (S.UNDERPAID, S.EXPIRED): _SYS,  # what arrived is held for refund
    (S.UNDERPAID, S.FAILED): _ADMIN,
    (S.EXPIRED, S.LATE): _SYS,
    (S.EXPIRED, S.CONFIRMED): _ADMIN,  # a bank transfer that arrived after expiry, accepted by treasury
    (S.LATE, S.CONFIRMED): _ADMIN,  # reviewed and accepted: the held funds are credited
    (S.LATE, S.REFUNDED): _ADMIN,
    (S.LATE, S.PARTIALLY_REFUNDED): _ADMIN,
    (S.EXPIRED, S.REFUNDED): _ADMIN,
    (S.EXPIRED, S.PARTIALLY_REFUNDED): _ADMIN,
    (S.CONFIRMED, S.REFUNDED): _ADMIN,
    (S.CONFIRMED, S.PARTIALLY_REFUNDED): _ADMIN,
    (S.OVERPAID, S.REFUNDED): _ADMIN,
    (S.OVERPAID, S.PARTIALLY_REFUNDED): _ADMIN,
    (S.PARTIALLY_REFUNDED, S.PARTIALLY_REFUNDED): _ADMIN,
    (S.PARTIALLY_REFUNDED, S.REFUNDED): _ADMIN,
    # a refund's payout failed on chain: the refund is undone (resolvers/payments/payouts.py)
    (S.REFUNDED, S.PARTIALLY_REFUNDED): _SYS,
    **{
        (s, back): _SYS
        for s in (S.REFUNDED, S.PARTIALLY_REFUNDED)
        for back in (S.CONFIRMED, S.OVERPAID, S.LATE, S.EXPIRED)
    },
}

# states the reconciler still looks at (an EXPIRED payment may still receive a late transfer)
OPEN_STATES = (S.AWAITING_FUNDS, S.DETECTED, S.UNDERPAID)
TERMINAL_STATES = frozenset({S.CANCELED, S.REFUNDED, S.FAILED})


# (payment id, from state, to state, actor id, reason, at): a payment_transitions row collected by `transition`
HistoryRow = tuple[uuid.UUID, str, str, uuid.UUID | None, str, datetime]
_INSERT_HISTORY = """
INSERT INTO payment_transitions (payment_id, from_state, to_state, actor_id, reason, at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::timestamptz[])"""


async def insert_history(session: AsyncSession, rows: list[HistoryRow]) -> None:
    """Write collected transition rows in one statement (raw asyncpg, in the session's transaction)."""
    if rows:
        await (await pg(session)).execute(_INSERT_HISTORY, *map(list, zip(*rows)))


def allowed(current: PaymentState, target: PaymentState, actor: Actor) -> bool:
    return actor in TRANSITIONS.get((current, target), frozenset())


def utcnow() -> datetime:
    return datetime.now(UTC)


def transition(
    session: AsyncSession,
    payment: Payment,
    target: PaymentState,
    *,
    actor: Actor,
    actor_id: uuid.UUID | None = None,
    reason: str = "",
    now: datetime | None = None,
    history: list[HistoryRow] | None = None,
) -> None:
    """Move `payment` (a row locked by the caller) to `target`, or raise InvalidTransition (CONFLICT). With
    `history`, the payment_transitions row is appended there for the caller to insert with its batch
    (`insert_history`, in the same transaction) instead of being added to the session one ORM object at a time."""
    current = payment.state
    if not allowed(current, target, actor):
        raise InvalidTransition("payment", current.value, target.value)
    now = now or utcnow()
    payment.state = target
    payment.updated_at = now
    if target is S.DETECTED and payment.detected_at is None:
        payment.detected_at = now
    if target in (S.CONFIRMED, S.OVERPAID):
        payment.confirmed_at = now
    if history is not None:
        history.append((payment.id, current.value, target.value, actor_id, reason[:1000], now))
    else:
        session.add(
            PaymentTransition(
                payment_id=payment.id,
                from_state=current.value,
                to_state=target.value,
                actor_id=actor_id,
                reason=reason[:1000],
                at=now,
            )
        )
    notify.queue(session, payment, current)
