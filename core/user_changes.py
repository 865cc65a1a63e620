"""Accounts changed in the database end their tokens: a trigger (migration 0013) records every user disabled,
deleted or stripped of a role in `user_revocations` and notifies `rwa_user_revoked`; each API process listens and
marks the user in the revocation list (core.revocation), so tokens issued before the change are refused, whoever
made it (the API, the CLI, an operator's SQL).

On (re)connect the listener replays the table's rows younger than the token lifetime: changes made while no
process was listening are not lost. Rows older than that are deleted then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg

from core.revocation import RevocationList

log = logging.getLogger("rwa.revocation")

CHANNEL = "rwa_user_revoked"
_RETRY_S = 1.0


class UserChangeListener:
    def __init__(self, dsn: str, revocations: RevocationList) -> None:
        self.dsn = dsn
        self.revocations = revocations
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._task is None or self._task.done():
            ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._listen(ready), name="user-change-listener")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(ready), 5)

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self.dsn)
                lost = asyncio.get_running_loop().create_future()
                conn.add_termination_listener(lambda _c, lost=lost: lost.done() or lost.set_result(None))
                await conn.add_listener(CHANNEL, self._notified)
                await self._replay(conn)  # after LISTEN: nothing committed meanwhile is missed
                if not ready.done():
                    ready.set_result(None)
                await lost
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - database unreachable: retry; replay covers the gap
                log.warning("user change listener failed; retrying", exc_info=True)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(_RETRY_S)

    async def _replay(self, conn: Any) -> None:
        floor = time.time() - self.revocations.ttl_s
        await conn.execute("DELETE FROM user_revocations WHERE revoked_at < to_timestamp($1)", floor)
        rows = await conn.fetch(
            "SELECT user_id, max(extract(epoch FROM revoked_at)) FROM user_revocations GROUP BY user_id"
        )
        for user_id, at in rows:
            await self.revocations.record_user(str(user_id), float(at))

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        user_id, _, at = payload.partition(" ")
        task = asyncio.create_task(self._revoke(user_id, float(at) if at else time.time()))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _revoke(self, user_id: str, at: float) -> None:
        try:
            await self.revocations.record_user(user_id, at)
        except Exception:  # noqa: BLE001 - Redis down: the replay after reconnecting applies it
            log.warning("could not record a revoked user", exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
