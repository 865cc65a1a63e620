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
    tx_type=2,
    max_fee_cap_wei=500 * 10**9,  # 500 gwei: above every sustained spike since London
    priority_fee_wei=2 * 10**9,
    min_signer_balance_wei=5 * 10**16,  # 0.05 ETH: ~25 forced transfers at 30 gwei
    native_currency=NativeCurrency("Ether", "ETH"),
)
