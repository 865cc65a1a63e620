"""Live updates from completion handlers, published only once the executor's transaction has committed.

A handler calls `queue(session, channel, event)`; the first call on a session hooks its `after_commit` (and
`after_rollback`, which drops the queue), so a rolled-back completion announces nothing and a committed one announces
each event once. Publishing is best effort (the state is committed; clients re-read it), on a Redis client built from
the settings once per event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from core.redis import create_redis
from core.settings import get_settings

log = logging.getLogger("rwa.agent.effects")
_KEY = "agent_effect_events"
_HOOKED = "agent_effect_hooked"
_clients: dict[int, tuple[Redis, str]] = {}
_override: tuple[Redis, str] | None = None
_tasks: set[asyncio.Task[None]] = set()


def configure(redis: Redis | None, prefix: str = "") -> None:
    """Publish through this client (tests, the executor's own client); None: back to the settings' REDIS_URL."""
    global _override
    _override = (redis, prefix) if redis is not None else None


def _client() -> tuple[Redis, str] | None:
    if _override is not None:
        return _override
    loop = id(asyncio.get_running_loop())
    if loop not in _clients:
        settings = get_settings()
        if not settings.redis_url:
            return None
        _clients[loop] = (create_redis(settings.redis_url), settings.redis_prefix)
    return _clients[loop]


def queue(session: AsyncSession, channel: str, payload: dict[str, Any]) -> None:
    session.info.setdefault(_KEY, []).append((channel, payload))
    sync = session.sync_session
    if not sync.info.get(_HOOKED):
        sync.info[_HOOKED] = True
        event.listen(sync, "after_commit", _after_commit)
        event.listen(sync, "after_soft_rollback", _after_rollback)


def _after_rollback(sync_session: Any, previous_transaction: Any) -> None:
    sync_session.info.pop(_KEY, None)


def _after_commit(sync_session: Any) -> None:
    events = sync_session.info.pop(_KEY, None)
    if not events:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = loop.create_task(publish(events))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def publish(events: list[tuple[str, dict[str, Any]]]) -> None:
    client = _client()
    if client is None:
        return
    redis, prefix = client
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for channel, payload in events:
                pipe.publish(prefix + channel, json.dumps(payload, default=str))
            await pipe.execute()
    except Exception:  # committed anyway; a lost live update is recovered by re-reading
        log.warning("could not publish %d agent effect events", len(events), exc_info=True)


async def drain() -> None:
    """Wait for the publications already scheduled (tests, shutdown)."""
    while _tasks:
        await asyncio.gather(*list(_tasks), return_exceptions=True)
