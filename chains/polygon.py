"""Polygon PoS."""

from chains.spec import ChainSpec, NativeCurrency

POLYGON = ChainSpec(
    chain_id=137,
    name="Polygon PoS",
    short_name="polygon",
    aliases=("matic", "polygon-pos"),
    block_time_s=2,
    # Polygon has seen reorgs far deeper than Ethereum's; only used when the node lacks tags.
    finality_depth=256,
    supports_finality_tags=True,
    max_logs_range=2_000,
    max_logs_range_floor=1,
    tx_type=2,
    max_fee_cap_wei=5_000 * 10**9,  # Polygon base fees spike into the thousands of gwei
    priority_fee_wei=30 * 10**9,  # validators ignore tips under 25-30 gwei
    min_signer_balance_wei=2 * 10**18,  # 2 POL
    native_currency=NativeCurrency("POL", "POL"),
)
