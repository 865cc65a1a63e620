"""The caller's own events on a pub/sub channel, for the PRIVATE subscriptions (myOrders, mySettlements,
myWithdrawals): delivered until the caller's access token expires, when the socket is closed with 4401."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

from strawberry.types import Info

TOKEN_EXPIRED_CLOSE_CODE = 4401  # graphql-transport-ws "Unauthorized" (server/shared_subscriptions.py closes alike)


async def personal_stream(info: Info, channel: str) -> AsyncGenerator[dict[str, Any], None]:
    """The caller's events on `channel`, until its access token expires (the socket then closes with 4401)."""
    viewer = info.context.viewer
    async with info.context.services.pubsub.listen(channel) as events:
        while True:
            timeout = None if viewer.expires_at is None else viewer.expires_at - time.time()
            if timeout is not None and timeout <= 0:
                await close_expired(info)
                return
            try:
                payload = await asyncio.wait_for(events.__anext__(), timeout)
            except TimeoutError:
                continue
            yield json.loads(payload)


async def close_expired(info: Info) -> None:
    socket = info.context.request
    close = getattr(socket, "close", None)
    if close is not None:
        try:
            await close(code=TOKEN_EXPIRED_CLOSE_CODE, reason="access token expired")
        except Exception:  # already closing
            pass
