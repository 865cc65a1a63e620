"""The one way a write operation runs: a unit of work that owns the commit, the transient-error retry and the
publishes that must happen only after the commit.

    uow = UnitOfWork(session)
    order = await uow.run(lambda: place(session, ...))          # commits at the end, retried on a deadlock
    uow.after_commit(lambda: market_data.publish(pubsub, events))  # queued inside the work, run after the commit

Every GraphQL mutation runs in one (schema/mutations.py); jobs and the CLI use the same class without a request.

- `run(work)`: runs `work` and commits what it left in the session's transaction. On a deadlock or serialization
  failure (core.transactions) the session is rolled back, the queued publishes are dropped, and `work` runs again
  from the start (bounded, jittered); after the last attempt the caller gets CONFLICT TRANSIENT_DB_CONFLICT.
- After the commit the queued callbacks run in order; one that fails is logged and does not undo the commit (the
  data is there; subscribers re-read state on their next snapshot).
- `abort()`: rolls back what the work left uncommitted and drops the queued callbacks (an expected failure).

Work that commits part of its changes itself (a refused login recording the attempt) keeps that part: `abort`
rolls back only what is still pending.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from core.transactions import retry_transient

log = logging.getLogger("rwa.uow")
T = TypeVar("T")
_ACTIVE = "rwa.unit_of_work"  # session.info flag: a unit of work owns this session's commit


def in_unit(session: AsyncSession) -> bool:
    """Whether a unit of work owns this session's commit (a mutation, or a job running in one)."""
    return bool(session.info.get(_ACTIVE))


async def commit(session: AsyncSession) -> None:
    """What a domain operation calls where its work is complete: inside a unit of work (every mutation, and jobs
    that use one) the unit commits at its end, so this only flushes (constraint errors surface here, in order);
    outside one it commits. A write that must persist even when the operation then fails (a failed sign-in
    counted before the refusal) calls `session.commit()` itself and says why."""
    if in_unit(session):
        await session.flush()
    else:
        await session.commit()


class UnitOfWork:
    __slots__ = ("_after", "session")

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._after: list[Callable[[], Awaitable[object]]] = []

    def after_commit(self, callback: Callable[[], Awaitable[object]]) -> None:
        """Run `callback` once the work has committed (never when it fails or is retried)."""
        self._after.append(callback)

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        async def once() -> T:
            result = await work()
            if self.session.in_transaction():
                await self.session.commit()
            return result

        outer = self.session.info.get(_ACTIVE)
        self.session.info[_ACTIVE] = True
        try:
            result = await retry_transient(self.session, once, on_retry=self._after.clear)
        finally:
            if not outer:
                self.session.info.pop(_ACTIVE, None)
        callbacks, self._after = self._after, []
        for callback in callbacks:
            try:
                await callback()
            except Exception:
                log.exception("after-commit callback failed (the commit stands)")
        return result

    async def abort(self) -> None:
        self._after.clear()
        if self.session.in_transaction():
            await self.session.rollback()
