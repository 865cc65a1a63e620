"""Redis pub/sub fan-out inside one process: one Redis subscription per channel, however many local listeners.

    hub = PubSubHub(redis)
    async with hub.listen("market:1:trades") as events:     # bounded queue per listener
        async for payload in events:                        # bytes as published
            ...
    await hub.publish("market:1:trades", b"...")           # from any process

A listener that falls behind loses the oldest messages (never blocks the reader or the publisher) and its
`dropped` counter tells it so, so market-data streams can resynchronise with a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from redis.asyncio import Redis

log = logging.getLogger("rwa.pubsub")


class Listener:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, payload: bytes) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # drop the oldest: slow consumers never block the fan-out
            self.dropped += 1
        self.queue.put_nowait(payload)

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> bytes:
        return await self.queue.get()


class PubSubHub:
    def __init__(self, redis: Redis, prefix: str = "") -> None:
        self.redis = redis
        self.prefix = prefix
        self._listeners: dict[str, set[Listener]] = {}
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def publish(self, channel: str, payload: bytes | str) -> int:
        return int(await self.redis.publish(self.prefix + channel, payload))

    @contextlib.asynccontextmanager
    async def listen(self, channel: str, maxsize: int = 256) -> AsyncIterator[Listener]:
        listener = Listener(maxsize)
        full = self.prefix + channel
        async with self._lock:
            listeners = self._listeners.setdefault(full, set())
            if not listeners:
                await self._pubsub.subscribe(full)
            listeners.add(listener)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="pubsub-reader")
        try:
            yield listener
        finally:
            async with self._lock:
                listeners = self._listeners.get(full, set())
                listeners.discard(listener)
                if not listeners:
                    self._listeners.pop(full, None)
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(full)

    async def _read(self) -> None:
        while True:
            try:
                if not self._listeners:
                    await asyncio.sleep(0.05)
                    if not self._listeners:
                        continue
                message = await self._pubsub.get_message(timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                channel = message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else channel
                data = message["data"]
                payload = data if isinstance(data, bytes) else str(data).encode()
                for listener in tuple(self._listeners.get(channel, ())):
                    listener.offer(payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # connection hiccup: redis-py reconnects on the next call
                log.warning("pub/sub read failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
