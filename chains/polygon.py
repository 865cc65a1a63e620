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
    native_currency=NativeCurrency("POL", "POL"),
)
