"""The transition table and the reconciler's decision function, case by case (pure: no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.errors import InvalidTransition
from models.payments import PaymentState
from resolvers.payments.reconcile import Transfer, decide
from resolvers.payments.states import TRANSITIONS, Actor, allowed

S = PaymentState
EXPIRES = datetime(2026, 1, 1, 12, tzinfo=UTC)
ON_TIME = EXPIRES - timedelta(minutes=5)
LATE = EXPIRES + timedelta(minutes=5)


def t(value: int, block: int, at: datetime | None = ON_TIME, i: int = 0) -> Transfer:
    return Transfer(f"0x{block:064x}", i, block, "0xtx", "0xfrom", value, at)


@pytest.mark.parametrize(
    ("state", "transfers", "finalized", "target"),
    [
        (S.AWAITING_FUNDS, [], 100, None),
        (S.AWAITING_FUNDS, [t(100, 50)], 40, S.DETECTED),  # seen, not final
        (S.AWAITING_FUNDS, [t(100, 50)], 50, S.CONFIRMED),  # already final when first seen
        (S.DETECTED, [t(100, 50)], 60, S.CONFIRMED),
        (S.DETECTED, [t(150, 50)], 60, S.OVERPAID),
        (S.AWAITING_FUNDS, [t(60, 50)], 40, S.UNDERPAID),
        (S.UNDERPAID, [t(60, 50), t(40, 55, i=1)], 52, S.DETECTED),  # topped up, the top-up not final
        (S.UNDERPAID, [t(60, 50), t(40, 55, i=1)], 55, S.CONFIRMED),  # several transfers sum
        (S.DETECTED, [], 60, S.AWAITING_FUNDS),  # a reorg removed it
        (S.UNDERPAID, [], 60, S.AWAITING_FUNDS),
        (S.DETECTED, [t(60, 50)], 40, S.UNDERPAID),  # a reorg removed one of two
        (S.AWAITING_FUNDS, [t(100, 50, LATE)], 60, None),  # late: left for expiry, then LATE
        (S.EXPIRED, [t(100, 50, LATE)], 40, None),  # late, not final yet
        (S.EXPIRED, [t(100, 50, LATE)], 50, S.LATE),
        (S.CONFIRMED, [t(100, 50), t(5, 70, i=1)], 80, None),  # settled payments are not reopened
    ],
)
def test_decisions(state: PaymentState, transfers: list[Transfer], finalized: int, target: PaymentState | None) -> None:
    assert decide(state, 100, EXPIRES, transfers, finalized).target is target


def test_finality_unknown_confirms_nothing() -> None:
    assert decide(S.DETECTED, 100, EXPIRES, [t(100, 1)], None).target is None


def test_table_enforces_who_may_move_what() -> None:
    assert allowed(S.DETECTED, S.CONFIRMED, Actor.SYSTEM)
    assert not allowed(S.DETECTED, S.CONFIRMED, Actor.ADMIN)  # only final funds confirm a stablecoin payment
    assert not allowed(S.CONFIRMED, S.REFUNDED, Actor.SYSTEM)
    assert not allowed(S.AWAITING_FUNDS, S.CANCELED, Actor.SYSTEM)
    assert allowed(S.AWAITING_FUNDS, S.CANCELED, Actor.OWNER)
    assert not allowed(S.CONFIRMED, S.AWAITING_FUNDS, Actor.SYSTEM)  # finalized funds never go back
    for terminal in (S.CANCELED, S.FAILED):
        assert not [k for k in TRANSITIONS if k[0] is terminal]
    # REFUNDED is final for people; only a failed on-chain payout (the system) undoes it
    assert all(actors == {Actor.SYSTEM} for k, actors in TRANSITIONS.items() if k[0] is S.REFUNDED)


def test_refused_transition_is_a_typed_conflict() -> None:
    from models.payments import Payment
    from resolvers.payments.states import transition

    p = Payment(state=S.CONFIRMED)
    with pytest.raises(InvalidTransition) as exc:
        transition(None, p, S.AWAITING_FUNDS, actor=Actor.SYSTEM)  # type: ignore[arg-type]
    assert exc.value.code.value == "CONFLICT" and p.state is S.CONFIRMED
