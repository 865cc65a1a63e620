"""Live settlement and withdrawal changes of the caller (published by the agent's completion handlers after the
executor's transaction commits: agent/effects/live.py). Types and fields only."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.types import Info

from schema.market_data import _close_expired
from schema.permissions import authenticated
from schema.sharing import PRIVATE
from schema.trading import SettlementStatus


@strawberry.type(description="A trade of the caller whose settlement finished: SETTLED, or FAILED with the reason.")
class SettlementUpdate:
    trade_id: uuid.UUID
    market_id: uuid.UUID
    settlement: SettlementStatus
    failure_reason: str | None
    tx_hash: str | None
    block_number: int | None

    @classmethod
    def of(cls, e: dict[str, Any]) -> SettlementUpdate:
        from models.trading import SettlementStatus as Status

        return cls(
            trade_id=uuid.UUID(e["tradeId"]),
            market_id=uuid.UUID(e["marketId"]),
            settlement=Status(e["settlement"]),
            failure_reason=e.get("failureReason"),
            tx_hash=e.get("txHash"),
            block_number=e.get("blockNumber"),
        )


async def personal_stream(info: Info, channel: str) -> AsyncGenerator[dict[str, Any], None]:
    """The caller's events on `channel`, until its access token expires (the socket then closes with 4401)."""
    viewer = info.context.viewer
    async with info.context.services.pubsub.listen(channel) as events:
        while True:
            timeout = None if viewer.expires_at is None else viewer.expires_at - time.time()
            if timeout is not None and timeout <= 0:
                await _close_expired(info)
                return
            try:
                payload = await asyncio.wait_for(events.__anext__(), timeout)
            except TimeoutError:
                continue
            yield json.loads(payload)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        extensions=authenticated(),
        metadata=PRIVATE,
        description=("The caller's trades (as buyer or seller) as their settlement finishes on chain."),
    )
    async def my_settlements(self, info: Info) -> AsyncGenerator[SettlementUpdate, None]:
        user_id = info.context.viewer.require_user()
        async for event in personal_stream(info, f"user:{user_id}:settlements"):
            yield SettlementUpdate.of(event)
