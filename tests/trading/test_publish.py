"""Market data publishing (resolvers/trading/market_data.publish) on a real Redis: calls that arrive together share
pipelines, and every message still arrives exactly once, in the order of the calls."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from redis.asyncio import Redis

from resolvers.trading import market_data
from resolvers.trading.market_data import Events


async def test_concurrent_publishes_share_pipelines_and_keep_call_order(redis_url, redis_prefix):  # type: ignore[no-untyped-def]
    redis = Redis.from_url(redis_url)
    listener = redis.pubsub()
    await listener.psubscribe(redis_prefix + "*")
    await listener.get_message(timeout=1)  # the subscription's confirmation
    pipelines = 0
    real_pipeline = redis.pipeline

    def counting_pipeline(*args: Any, **kw: Any) -> Any:
        nonlocal pipelines
        pipelines += 1
        return real_pipeline(*args, **kw)

    redis.pipeline = counting_pipeline  # type: ignore[method-assign]  # a spy: the real pipeline runs
    hub = SimpleNamespace(redis=redis, prefix=redis_prefix)
    calls = 40
    try:
        batches = []
        for i in range(calls):
            events = Events()
            events.add("market:m:trades", {"call": i, "part": 0})
            events.add(f"user:u{i % 3}:orders", {"call": i, "part": 1})
            batches.append(events)
        await asyncio.gather(*[market_data.publish(hub, e) for e in batches])
        received: list[tuple[int, int]] = []
        while len(received) < 2 * calls:
            message = await listener.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message is not None, f"only {len(received)} of {2 * calls} messages arrived"
            body = json.loads(message["data"])
            received.append((body["call"], body["part"]))
        assert received == [(i, part) for i in range(calls) for part in (0, 1)]  # once each, in call order
        assert await listener.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
        assert 1 <= pipelines < calls / 4, pipelines
        # later calls, one at a time, still go out (a new sender task after the previous one ended)
        await market_data.publish(hub, batches[0])
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None and json.loads(message["data"]) == {"call": 0, "part": 0}
    finally:
        await listener.aclose()
        await redis.aclose()
