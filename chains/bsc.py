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
    tx_type=0,  # legacy gas price: BSC validators price by gasPrice
    max_fee_cap_wei=20 * 10**9,
    priority_fee_wei=0,
    min_signer_balance_wei=2 * 10**16,  # 0.02 BNB
    native_currency=NativeCurrency("BNB", "BNB"),
)
