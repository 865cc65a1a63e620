"""Pure rules: fees per chain (first send, replacement bump >= 12.5% on both fields within the cap) and nonce
allocation (gaps re-used, nonces pending in the pool but not ours skipped)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.fees import Fees, bumped, initial_fees
from agent.nonces import foreign_nonces, free_nonces
from chains.bsc import BSC
from chains.ethereum import ETHEREUM
from chains.polygon import POLYGON


def test_first_send_uses_the_chain_spec() -> None:
    eth = initial_fees(ETHEREUM, ETHEREUM.max_fee_cap_wei, base_fee=10 * 10**9, node_tip=10**9, node_gas_price=None)
    assert eth == Fees(max_fee_per_gas=22 * 10**9, max_priority_fee_per_gas=2 * 10**9)  # 2 x base + spec tip
    pol = initial_fees(POLYGON, POLYGON.max_fee_cap_wei, base_fee=100 * 10**9, node_tip=40 * 10**9, node_gas_price=0)
    assert pol.max_priority_fee_per_gas == 40 * 10**9 and pol.max_fee_per_gas == 240 * 10**9
    bsc = initial_fees(BSC, BSC.max_fee_cap_wei, base_fee=0, node_tip=None, node_gas_price=3 * 10**9)
    assert bsc == Fees(gas_price=3 * 10**9) and bsc.tx_fields() == {"gasPrice": 3 * 10**9}
    capped = initial_fees(ETHEREUM, 5 * 10**9, base_fee=10 * 10**9, node_tip=None, node_gas_price=None)
    assert capped.max_fee_per_gas == 5 * 10**9  # never above the cap


@given(fee=st.integers(1, 10**13), tip=st.integers(0, 10**12), base=st.integers(0, 10**13), pct=st.integers(13, 100))
def test_replacement_bumps_both_fields_by_at_least_12_5_percent_or_not_at_all(
    fee: int, tip: int, base: int, pct: int
) -> None:
    tip = min(tip, fee)
    cap = 2 * 10**13
    old = Fees(max_fee_per_gas=fee, max_priority_fee_per_gas=tip)
    fresh = initial_fees(ETHEREUM, cap, base, None, None)
    new = bumped(old, fresh, cap, pct)
    if new is None:
        return
    assert new.max_fee_per_gas * 1000 >= fee * 1125 and new.max_priority_fee_per_gas * 1000 >= tip * 1125
    assert new.max_fee_per_gas <= cap and new.max_priority_fee_per_gas <= new.max_fee_per_gas
    assert new.max_fee_per_gas >= (fresh.max_fee_per_gas or 0) or new.max_fee_per_gas == cap


def test_no_replacement_past_the_cap() -> None:
    old = Fees(max_fee_per_gas=95, max_priority_fee_per_gas=10)
    assert bumped(old, old, cap=100, pct=25) is None  # +12.5% would pass the cap: wait instead
    assert bumped(Fees(gas_price=90), Fees(gas_price=90), cap=100, pct=25) is None
    assert bumped(Fees(gas_price=80), Fees(gas_price=80), cap=100, pct=25) == Fees(gas_price=100)


@pytest.mark.parametrize(
    ("mined", "pending", "held", "expected"),
    [
        (5, 5, [], [5, 6, 7]),
        (5, 8, [5, 6, 7], [8, 9, 10]),  # ours in flight
        (5, 8, [5, 7], [8, 9, 10]),  # 6 pending in the pool, not ours: somebody else's, skipped
        (5, 5, [6, 8], [5, 7, 9]),  # a canceled op's nonce below ours is re-used: no gap stalls the sender
        (5, 6, [3, 4], [6, 7, 8]),  # nonces below the mined count are history
    ],
)
def test_free_nonces(mined: int, pending: int, held: list[int], expected: list[int]) -> None:
    assert list(itertools.islice(free_nonces(mined, pending, held), 3)) == expected


def test_foreign_nonces_are_pending_ones_not_ours() -> None:
    assert foreign_nonces(5, 9, [5, 7]) == [6, 8]
