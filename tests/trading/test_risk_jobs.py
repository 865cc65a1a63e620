"""The worker runs the risk and liquidity jobs: both actors are registered and on the periodic schedule."""

from __future__ import annotations


def test_breaker_resume_and_maker_sampling_are_scheduled() -> None:
    from jobs import actors
    from jobs.broker import broker
    from resolvers.trading.market_makers import SAMPLE_INTERVAL_S

    schedule = {job.actor_name: job.interval_s for job in actors.scheduler.jobs}
    assert schedule["resume_halted_markets"] <= 1.0  # a halt ends within a second of its due time
    assert schedule["sample_market_makers"] == SAMPLE_INTERVAL_S
    declared = set(broker.get_declared_actors())
    assert {"resume_halted_markets", "sample_market_makers"} <= declared
