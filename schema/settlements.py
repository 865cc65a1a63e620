"""Live settlement and withdrawal changes of the caller (published by the agent's completion handlers after the
executor's transaction commits: agent/effects/live.py). Types and fields only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.types import Info

from schema.permissions import authenticated
from schema.personal_streams import personal_stream
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
