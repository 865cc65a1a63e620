"""Re-running a unit of work when Postgres aborts its transaction for a transient reason.

A deadlock (SQLSTATE 40P01) or a serialization failure (40001) means the database rolled our transaction back to
let another one through; running the same work again from the start, in a fresh transaction, usually succeeds.
That is only safe when the work is a *unit*: it starts with no transaction state, does nothing but database work
(no publishes, HTTP calls or messages: those happen after it returns), and commits at its end. The write paths
wrap exactly that part:

    placed = await retry_transient(session, lambda: place_order_once(session, ...))

or, for a resolver whose first argument is the session and which commits at its end, `@transient_retry`.

Attempts are bounded (`ATTEMPTS`), spaced by "full jitter" exponential backoff (a random delay in
[0, min(MAX_DELAY_S, BASE_DELAY_S * 2**n)], so two transactions that deadlocked do not collide again in step),
and only those two SQLSTATEs are retried: anything else, a domain error included, propagates at once. When every
attempt failed the caller gets CONFLICT (reason TRANSIENT_DB_CONFLICT) instead of INTERNAL: nothing was
written and the same request may be sent again.

A unit nested in another unit on the same session runs once: only the outermost one owns the transaction, so only
it may roll back and re-run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict

log = logging.getLogger("rwa.db")
T = TypeVar("T")

TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
ATTEMPTS = 4
BASE_DELAY_S = 0.01
MAX_DELAY_S = 0.2
_ACTIVE = "rwa.retry_transient"


def transient_sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a transient failure anywhere in `exc`'s chain (asyncpg errors carry `sqlstate`;
    SQLAlchemy wraps them in DBAPIError with `.orig`), else None."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        code = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if code in TRANSIENT_SQLSTATES:
            return str(code)
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return None


def transient_conflict(advice: str) -> Conflict:
    """What the client gets for a transaction Postgres aborted (deadlock, serialization failure): CONFLICT with
    reason TRANSIENT_DB_CONFLICT, i.e. send the operation again."""
    return Conflict(
        f"the database aborted this change because of concurrent changes; {advice}", reason="TRANSIENT_DB_CONFLICT"
    )


def backoff(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
    return (rng or random).uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2**attempt))


async def retry_transient(
    session: AsyncSession,
    unit: Callable[[], Awaitable[T]],
    *,
    attempts: int = ATTEMPTS,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run `unit` (database work on `session` that commits at its end); on a deadlock or serialization failure
    roll the session back, call `on_retry` (to drop per-attempt state kept outside the database, e.g. queued
    events), wait a jittered backoff and run it again, at most `attempts` times in all."""
    if session.info.get(_ACTIVE):
        return await unit()
    session.info[_ACTIVE] = True
    try:
        for attempt in range(1, attempts + 1):
            try:
                return await unit()
            except Exception as exc:
                code = transient_sqlstate(exc)
                if code is None:
                    raise
                await session.rollback()
                if on_retry is not None:
                    on_retry()
                if attempt == attempts:
                    log.warning("transaction aborted (%s) %d times; giving up", code, attempts)
                    raise transient_conflict("nothing was written, send it again") from exc
                log.info("transaction aborted (%s), attempt %d of %d; running it again", code, attempt, attempts)
                await asyncio.sleep(backoff(attempt))
        raise AssertionError("unreachable")
    finally:
        session.info.pop(_ACTIVE, None)


def transient_retry(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorate a unit of work `fn(session, ...)` (it commits at its end) with `retry_transient`."""

    @functools.wraps(fn)
    async def run(session: AsyncSession, *args: Any, **kwargs: Any) -> T:
        return await retry_transient(session, lambda: fn(session, *args, **kwargs))

    return run
