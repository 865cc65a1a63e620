"""Ethereum mainnet."""

from chains.spec import ChainSpec, NativeCurrency

ETHEREUM = ChainSpec(
    chain_id=1,
    name="Ethereum",
    short_name="ethereum",
    aliases=("eth", "mainnet"),
    block_time_s=12,
    # Two epochs: a block this deep is finalized under normal Casper FFG operation.
    finality_depth=64,
    supports_finality_tags=True,
    max_logs_range=2_000,
    max_logs_range_floor=1,
    native_currency=NativeCurrency("Ether", "ETH"),
)
