"""The allocation rules (resolvers/issuance/allocation.py): the cap is never exceeded, nobody gets more than asked,
cash is conserved to the last unit, and oversubscription is shared pro-rata with remainders by time priority."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from models.issuance import AllocationRule
from resolvers.issuance.allocation import Demand, allocate, lots_for

amounts = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("1000000"), places=6)
prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(amounts, min_size=0, max_size=60), prices, amounts, st.sampled_from(list(AllocationRule)))
def test_cap_respected_and_cash_conserved(
    amounts_: list[Decimal], lot_price: Decimal, hard_cap: Decimal, rule: AllocationRule
) -> None:
    demands = [Demand(i, i, a) for i, a in enumerate(amounts_)]
    result = allocate(demands, lot_price=lot_price, hard_cap=hard_cap, rule=rule)
    assert [a.key for a in result] == [d.key for d in demands]
    assert sum(a.lots for a in result) <= lots_for(hard_cap, lot_price)
    assert sum(a.cash for a in result) <= hard_cap
    for d, a in zip(demands, result):
        assert 0 <= a.lots <= lots_for(d.amount, lot_price)
        assert a.cash == a.lots * lot_price
        assert a.cash + a.released == d.amount  # exact: nothing created or lost
        assert a.released >= 0
    total_wanted = sum(lots_for(d.amount, lot_price) for d in demands)
    # the cap is filled as far as demand allows, whatever the rule
    assert sum(a.lots for a in result) == min(total_wanted, lots_for(hard_cap, lot_price))


def test_pro_rata_shares_and_gives_remainders_by_time() -> None:
    # 3 investors want 10 lots each, the cap is 20 lots: 6.67 each -> 6, 6, 6 and 2 left for the first two
    demands = [Demand("a", 1, Decimal(100)), Demand("b", 2, Decimal(100)), Demand("c", 3, Decimal(100))]
    got = {
        a.key: a.lots
        for a in allocate(demands, lot_price=Decimal(10), hard_cap=Decimal(200), rule=AllocationRule.PRO_RATA)
    }
    assert got == {"a": 7, "b": 7, "c": 6}


def test_pro_rata_remainder_order_follows_sequence_not_list_order() -> None:
    demands = [Demand("late", 9, Decimal(100)), Demand("early", 1, Decimal(100))]
    got = {
        a.key: a.lots
        for a in allocate(demands, lot_price=Decimal(10), hard_cap=Decimal(150), rule=AllocationRule.PRO_RATA)
    }
    assert got == {"early": 8, "late": 7}


def test_first_come_fills_in_time_order() -> None:
    demands = [Demand("b", 2, Decimal(100)), Demand("a", 1, Decimal(150)), Demand("c", 3, Decimal(50))]
    result = {
        a.key: a
        for a in allocate(demands, lot_price=Decimal(10), hard_cap=Decimal(200), rule=AllocationRule.FIRST_COME)
    }
    assert (result["a"].lots, result["b"].lots, result["c"].lots) == (15, 5, 0)
    assert result["b"].released == Decimal(50) and result["c"].released == Decimal(50)


def test_undersubscribed_gets_whole_lots_and_the_rest_back() -> None:
    [a] = allocate(
        [Demand("x", 1, Decimal("25.5"))], lot_price=Decimal(10), hard_cap=Decimal(1000), rule=AllocationRule.PRO_RATA
    )
    assert (a.lots, a.cash, a.released) == (2, Decimal(20), Decimal("5.5"))
