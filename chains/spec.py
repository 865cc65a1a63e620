"""What the indexer needs to know about an EVM chain, as plain data (cf. ape's ecosystem plugins)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class NativeCurrency:
    name: str
    symbol: str
    decimals: int = 18


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """One EVM chain.

    ``finality_depth`` is only a fallback: when the node answers the ``finalized``/``safe``
    block tags, those win. ``max_logs_range`` is the eth_getLogs block span the indexer
    starts with; ``max_logs_range_floor`` is the smallest span it shrinks to before giving up.
    """

    chain_id: int
    name: str
    short_name: str
    block_time_s: float
    finality_depth: int
    supports_finality_tags: bool
    max_logs_range: int
    max_logs_range_floor: int
    native_currency: NativeCurrency
    aliases: tuple[str, ...] = ()
    # Write side (agent/fees.py): 2 = EIP-1559 fees, 0 = legacy gas price. The caps bound what a replacement may
    # bump to (max fee per gas, or gas price for legacy); the priority fee is the tip offered at first send.
    tx_type: int = 2
    max_fee_cap_wei: int = 500 * 10**9
    priority_fee_wei: int = 2 * 10**9
    # Below this native balance the agent's signer stops sending (alert; operations wait).
    min_signer_balance_wei: int = 5 * 10**16
    # Empty on purpose: production URLs carry API keys and come from RPC_URLS_<chain_id>;
    # dev and tests use local anvil nodes.
    default_rpc_urls: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.chain_id <= 0:
            raise ValueError(f"chain_id must be positive, got {self.chain_id}")
        if not 1 <= self.max_logs_range_floor <= self.max_logs_range:
            raise ValueError("need 1 <= max_logs_range_floor <= max_logs_range")
        if self.finality_depth < 0:
            raise ValueError("finality_depth must be >= 0")
        if self.tx_type not in (0, 2):
            raise ValueError("tx_type must be 0 (legacy) or 2 (EIP-1559)")
        if self.max_fee_cap_wei <= 0 or self.priority_fee_wei < 0 or self.priority_fee_wei > self.max_fee_cap_wei:
            raise ValueError("need 0 <= priority_fee_wei <= max_fee_cap_wei and a positive cap")
