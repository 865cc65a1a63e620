"""Benchmark: `bench.trading_place_order` on a market with every risk control on and the seller a designated market
maker with a rebate, to compare with the plain run (same wrk flow, same baseline endpoint).

    .venv/bin/python -m bench.trading_place_order_risk [--duration 10] [--connections 50]

Limits: price band 10 % around the last trade, maximum order quantity and notional, a daily notional limit and a
maximum position per investor (loose enough that no bench order is refused), a circuit breaker (10 % in 5 min);
the seller's maker fee is -5 bps. Every placement then runs the risk read (in the gate's statement), the
position lock and read for buys, and the daily counter in the final statement.
"""

from __future__ import annotations

import uuid

from bench import trading_place_order as bench

_setup = bench._setup


async def _setup_with_risk(database_url: str):  # type: ignore[no-untyped-def]
    import asyncpg
    from sqlalchemy.engine import make_url

    market_id, traders, plain_user = await _setup(database_url)
    conn = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(
            "INSERT INTO market_risk_limits (market_id, price_band_bps, reference_price, max_order_quantity, "
            "max_order_notional, daily_notional_limit, max_position, breaker_move_bps, breaker_window_s, "
            "breaker_halt_s) VALUES ($1, 1000, 10, 1000, 1000000, 1000000000000, 1000000000, 1000, 300, 60)",
            uuid.UUID(market_id),
        )
        seller = next(uid for uid, side in traders if side == "SELL")
        await conn.execute(
            "INSERT INTO market_makers (market_id, user_id, maker_fee_bps, taker_fee_bps, max_spread_bps, "
            "min_quote_size, min_uptime, active) VALUES ($1, $2, -5, 10, 100, 1, 0.9, true)",
            uuid.UUID(market_id),
            uuid.UUID(seller),
        )
    finally:
        await conn.close()
    return market_id, traders, plain_user


if __name__ == "__main__":
    bench._setup = _setup_with_risk  # type: ignore[assignment]
    bench.main()
