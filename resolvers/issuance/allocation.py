"""Allocation of an offering at close: who gets how many tokens. Pure (no I/O), so its rules are tested alone.

Everything is counted in *lots* (the offering's smallest tradable quantity, `lot_size` whole tokens) at
`lot_price = price x lot_size` in the quote currency, so every allocation is a whole number of lots and its cash
an exact Decimal:

- demand of a subscription = floor(amount / lot_price) lots; what does not buy a whole lot is never allocated;
- the cap = floor(hard_cap / lot_price) lots;
- FIRST_COME: in time priority (sequence), each subscription takes min(its demand, what is left of the cap);
- PRO_RATA: when the demand fits the cap, everybody gets their demand; when it does not, each gets
  floor(demand x cap / total demand) lots, then the lots that rounding left over go one at a time, in time
  priority, to subscriptions still below their demand (so the cap is filled exactly and nobody gets more than
  asked).

Invariants (tests/issuance/test_allocation.py checks them with hypothesis): the sum of allocated lots never exceeds
the cap; nobody gets more than their demand; allocated cash + released cash = reserved cash, to the last unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext

from models.issuance import AllocationRule


@dataclass(frozen=True)
class Demand:
    key: object  # the subscription's id
    sequence: int  # time priority: lower came first
    amount: Decimal  # cash reserved for it


@dataclass(frozen=True)
class Allocation:
    key: object
    lots: int
    cash: Decimal  # lots x lot_price: moves to the issuer
    released: Decimal  # amount - cash: goes back to the investor


def lots_for(amount: Decimal, lot_price: Decimal) -> int:
    """How many whole lots `amount` buys."""
    with localcontext(prec=100):
        return int((amount / lot_price).to_integral_value(rounding=ROUND_FLOOR))


def allocate(
    demands: Sequence[Demand], *, lot_price: Decimal, hard_cap: Decimal, rule: AllocationRule
) -> list[Allocation]:
    """One Allocation per demand, in the order given."""
    if lot_price <= 0:
        raise ValueError("lot_price must be positive")
    cap = lots_for(hard_cap, lot_price)
    wanted = {d.key: lots_for(d.amount, lot_price) for d in demands}
    by_time = sorted(demands, key=lambda d: d.sequence)
    got: dict[object, int] = {}
    if rule is AllocationRule.FIRST_COME:
        left = cap
        for d in by_time:
            got[d.key] = take = min(wanted[d.key], left)
            left -= take
    else:
        total = sum(wanted.values())
        if total <= cap:
            got = dict(wanted)
        else:
            got = {d.key: wanted[d.key] * cap // total for d in demands}
            left = cap - sum(got.values())
            while left > 0:  # at most len(demands) rounds short: each round hands out >= 1 lot
                for d in by_time:
                    if left == 0:
                        break
                    if got[d.key] < wanted[d.key]:
                        got[d.key] += 1
                        left -= 1
    out = []
    with localcontext(prec=100):
        for d in demands:
            cash = lot_price * got[d.key]
            out.append(Allocation(d.key, got[d.key], cash, d.amount - cash))
    return out
