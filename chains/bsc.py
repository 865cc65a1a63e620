"""BNB Smart Chain."""

from chains.spec import ChainSpec, NativeCurrency

BSC = ChainSpec(
    chain_id=56,
    name="BNB Smart Chain",
    short_name="bsc",
    aliases=("bnb", "binance"),
    block_time_s=3,
    # Fast finality (validators' votes) usually finalizes within ~2 blocks; 15 is the classic safe depth.
    finality_depth=15,
    supports_finality_tags=True,
    # Public BSC nodes reject spans over 5000 blocks ("exceed maximum block range: 5000").
    max_logs_range=5_000,
    max_logs_range_floor=1,
    native_currency=NativeCurrency("BNB", "BNB"),
)
