"""Fees per chain from the chain spec: EIP-1559 (max fee + tip) where the chain has it, legacy gas price where
configured; replacement bumps within the chain's fee cap. Pure functions over numbers read by the executor.

First send (EIP-1559): tip = max(spec tip, node's eth_maxPriorityFeePerGas), max fee = 2 x latest base fee + tip
(survives six full blocks of +12.5% base-fee growth). Legacy: the node's eth_gasPrice, at least the spec tip.
A replacement pays max(old x (1 + bump), what a first send would pay now), both fields, capped; nodes accept a
replacement only with >= +10% (geth) / +12.5% (others) on every field, so a bump that the cap squeezes below that
is not sent (`Fees.bumped` returns None) and the op waits for the base fee to come down.
"""

from __future__ import annotations

from dataclasses import dataclass

from chains.spec import ChainSpec

MIN_BUMP_NUM, MIN_BUMP_DEN = 1125, 1000  # +12.5%


@dataclass(frozen=True, slots=True)
class Fees:
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    gas_price: int | None = None

    @property
    def legacy(self) -> bool:
        return self.gas_price is not None

    @property
    def max_cost_per_gas(self) -> int:
        return self.gas_price if self.gas_price is not None else int(self.max_fee_per_gas or 0)

    def tx_fields(self) -> dict[str, int]:
        if self.gas_price is not None:
            return {"gasPrice": self.gas_price}
        return {
            "maxFeePerGas": int(self.max_fee_per_gas or 0),
            "maxPriorityFeePerGas": int(self.max_priority_fee_per_gas or 0),
            "type": 2,
        }


def initial_fees(
    spec: ChainSpec, cap: int, base_fee: int | None, node_tip: int | None, node_gas_price: int | None
) -> Fees:
    if spec.tx_type == 0 or base_fee is None:
        price = max(node_gas_price or 0, spec.priority_fee_wei, 1)
        return Fees(gas_price=min(price, cap))
    tip = min(max(spec.priority_fee_wei, node_tip or 0), cap)
    max_fee = min(2 * base_fee + tip, cap)
    return Fees(max_fee_per_gas=max(max_fee, tip), max_priority_fee_per_gas=tip)


def _bump(old: int, pct: int) -> int:
    return max(old * (100 + pct) // 100, -(-old * MIN_BUMP_NUM // MIN_BUMP_DEN) + 1)


def bumped(old: Fees, fresh: Fees, cap: int, pct: int) -> Fees | None:
    """The replacement's fees, or None when the cap leaves no valid (>= +12.5%) bump."""

    def valid(new: int, prev: int) -> bool:
        return new * MIN_BUMP_DEN >= prev * MIN_BUMP_NUM

    if old.gas_price is not None:
        price = min(max(_bump(old.gas_price, pct), fresh.gas_price or fresh.max_cost_per_gas), cap)
        return Fees(gas_price=price) if valid(price, old.gas_price) else None
    old_fee, old_tip = int(old.max_fee_per_gas or 0), int(old.max_priority_fee_per_gas or 0)
    fee = min(max(_bump(old_fee, pct), fresh.max_fee_per_gas or 0), cap)
    tip = min(max(_bump(old_tip, pct), fresh.max_priority_fee_per_gas or 0), fee)
    if not (valid(fee, old_fee) and valid(tip, old_tip)):
        return None
    return Fees(max_fee_per_gas=fee, max_priority_fee_per_gas=tip)


def with_margin(estimate: int, pct: int) -> int:
    return estimate * (100 + pct) // 100 + 10_000
